import * as x509 from "@peculiar/x509";
import crypto from "node:crypto";

export function sha256Hex(der: ArrayBuffer | Uint8Array): string {
  return crypto.createHash("sha256").update(new Uint8Array(der)).digest("hex");
}

/** "AB:CD:..." as openssl x509 -fingerprint prints it. */
export function colonHex(hex: string): string {
  return hex.toUpperCase().match(/../g)!.join(":");
}

/** SHA-256 of the SubjectPublicKeyInfo a PKCS#10 request carries, hex: the key a certificate for it must name. */
export function csrKeySha256(csrPem: string): string {
  return sha256Hex(new x509.Pkcs10CertificateRequest(csrPem).publicKey.rawData);
}
