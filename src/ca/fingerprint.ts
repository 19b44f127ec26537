import crypto from "node:crypto";

export function sha256Hex(der: ArrayBuffer | Uint8Array): string {
  return crypto.createHash("sha256").update(new Uint8Array(der)).digest("hex");
}

/** "AB:CD:..." as openssl x509 -fingerprint prints it. */
export function colonHex(hex: string): string {
  return hex.toUpperCase().match(/../g)!.join(":");
}
