import type * as x509 from "@peculiar/x509";

/** PEM with exactly one trailing newline, so that PEMs concatenate into valid bundles. */
export function pemOf(cert: x509.X509Certificate): string {
  return cert.toString("pem").trim() + "\n";
}

/** DER in a PEM block, 64 characters a line: no empty line even when the base64 fills the last one. */
export function derToPem(der: Uint8Array, label: string): string {
  const body = Buffer.from(der).toString("base64").match(/.{1,64}/g)?.join("\n") ?? "";
  return `-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`;
}
