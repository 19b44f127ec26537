import type * as x509 from "@peculiar/x509";

/** PEM with exactly one trailing newline, so that PEMs concatenate into valid bundles. */
export function pemOf(cert: x509.X509Certificate): string {
  return cert.toString("pem").trim() + "\n";
}
