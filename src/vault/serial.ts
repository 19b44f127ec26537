/**
 * Serial numbers as Vault writes them: lower-case hex byte pairs joined by
 * colons ("39:dd:2e:..."). hsm-ca stores plain lower-case hex; both forms
 * are accepted wherever a client sends a serial.
 */
export function vaultSerial(hex: string): string {
  const even = hex.length % 2 ? `0${hex}` : hex;
  return even.toLowerCase().match(/../g)!.join(":");
}

/** The stored form of a serial given either way (colons or dashes between pairs, or none); undefined when it is not one. */
export function storedSerial(text: string): string | undefined {
  const hex = text.trim().toLowerCase().replace(/[:-]/g, "");
  if (!/^[0-9a-f]{1,40}$/.test(hex)) return undefined;
  // Stored serials have no leading zero byte (src/ca/serial.ts); a client may have padded one.
  return hex.replace(/^(?:00)+(?=[0-9a-f]{2})/, "");
}
