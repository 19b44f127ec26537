import crypto from "node:crypto";

/**
 * 127 bits from the CSPRNG, as hex: positive (top bit clear), never with a
 * leading zero byte, well above the 64 bits CA/B Forum asks for.
 */
export function newSerial(): string {
  const bytes = crypto.randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  if (bytes[0] === 0) bytes[0] = 0x01;
  return bytes.toString("hex");
}
