import * as x509 from "@peculiar/x509";
import { authorityKeyIdentifier } from "./authority-key-identifier.ts";
import type { CaCertificateInput } from "./ca-certificate.ts";
import { generateAfterLint } from "./signed-after-lint.ts";

/** Software WebCrypto for hashing key identifiers: no reason to spend HSM time on SHA-1. */
const soft = globalThis.crypto;

/** id-kp-OCSPSigning: the extended key usage of a delegated responder certificate. */
export const OID_OCSP_SIGNING = "1.3.6.1.5.5.7.3.9";
/** id-pkix-ocsp-nocheck: relying parties need not check the responder's own revocation (RFC 6960 §4.2.2.2.1); its value is NULL. */
export const OID_OCSP_NOCHECK = "1.3.6.1.5.5.7.48.1.5";

/** A delegated OCSP responder: short-lived, OCSPSigning only, never checked for revocation itself. */
export async function buildOcspResponderCertificate(
  input: CaCertificateInput & { issuer: x509.X509Certificate },
): Promise<x509.X509Certificate> {
  const publicKey = new x509.PublicKey(input.spki);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([OID_OCSP_SIGNING], false),
    new x509.Extension(OID_OCSP_NOCHECK, false, new Uint8Array([0x05, 0x00])),
    await x509.SubjectKeyIdentifierExtension.create(publicKey, false, soft),
    authorityKeyIdentifier(input.issuer),
  ];
  // Written with a throwaway key, linted, and only then signed by the CA key (src/lint).
  return generateAfterLint(
    {
      serialNumber: input.serial,
      subject: input.subject,
      issuer: input.issuer.subjectName,
      notBefore: input.notBefore,
      notAfter: input.notAfter,
      publicKey,
      extensions,
    },
    input.signer,
    { role: "ocsp-responder", issuer: input.issuer, template: { notBefore: input.notBefore, notAfter: input.notAfter, extendedKeyUsage: [OID_OCSP_SIGNING] } },
  );
}
