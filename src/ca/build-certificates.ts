import * as x509 from "@peculiar/x509";
import { asWebCrypto } from "../hsm/signing-crypto.ts";
import type { Signer } from "../hsm/key-manager.ts";

const CA_KEY_USAGE = x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign;

/** Software WebCrypto for hashing key identifiers: no reason to spend HSM time on SHA-1. */
const soft = globalThis.crypto;

export interface CaCertificateInput {
  subject: string;
  spki: ArrayBuffer;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  signer: Signer;
}

/** A self-signed root: CA true, pathLen 1 (one level of intermediates below it). */
export function buildRootCertificate(input: CaCertificateInput): Promise<x509.X509Certificate> {
  return buildCaCertificate(input, 1);
}

/** An issuing intermediate signed by its parent: CA true, pathLen 0; it points at the root's CRL when given. */
export function buildIntermediateCertificate(
  input: CaCertificateInput & { issuer: x509.X509Certificate; revocation?: RevocationPointers },
): Promise<x509.X509Certificate> {
  return buildCaCertificate(input, 0, input.issuer, input.revocation);
}

/** Without an issuer the certificate is self-signed: its own key identifier is also the authority's. */
async function buildCaCertificate(
  input: CaCertificateInput,
  pathLength: number,
  issuer?: x509.X509Certificate,
  revocation?: RevocationPointers,
): Promise<x509.X509Certificate> {
  const publicKey = new x509.PublicKey(input.spki);
  const ski = await x509.SubjectKeyIdentifierExtension.create(publicKey, false, soft);
  return input.signer.use((signingKey, crypto) =>
    x509.X509CertificateGenerator.create(
      {
        serialNumber: input.serial,
        subject: input.subject,
        issuer: issuer ? issuer.subjectName : input.subject,
        notBefore: input.notBefore,
        notAfter: input.notAfter,
        publicKey,
        signingKey,
        signingAlgorithm: input.signer.signingAlgorithm,
        extensions: [
          new x509.BasicConstraintsExtension(true, pathLength, true),
          new x509.KeyUsagesExtension(CA_KEY_USAGE, true),
          ski,
          issuer ? authorityKeyId(issuer) : new x509.AuthorityKeyIdentifierExtension(ski.keyId),
          ...(revocation ? revocationExtensions(revocation) : []),
        ],
      },
      asWebCrypto(crypto),
    ),
  );
}

/** Where relying parties check a certificate: CRL Distribution Point and Authority Information Access. */
export interface RevocationPointers {
  crlUrl: string;
  ocspUrl: string;
  caIssuersUrl: string;
}

function authorityKeyId(issuer: x509.X509Certificate): x509.AuthorityKeyIdentifierExtension {
  const ski = issuer.getExtension(x509.SubjectKeyIdentifierExtension);
  if (!ski) throw new Error(`issuer ${issuer.subject} has no subjectKeyIdentifier`);
  return new x509.AuthorityKeyIdentifierExtension(ski.keyId, false);
}

export function revocationExtensions(r: RevocationPointers): x509.Extension[] {
  return [
    new x509.CRLDistributionPointsExtension([r.crlUrl]),
    new x509.AuthorityInfoAccessExtension({ ocsp: [r.ocspUrl], caIssuers: [r.caIssuersUrl] }),
  ];
}

const OID_OCSP_SIGNING = "1.3.6.1.5.5.7.3.9";
/** id-pkix-ocsp-nocheck: relying parties need not check the responder's own revocation (RFC 6960 §4.2.2.2.1). */
const OID_OCSP_NOCHECK = "1.3.6.1.5.5.7.48.1.5";

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
    authorityKeyId(input.issuer),
  ];
  return input.signer.use((signingKey, crypto) =>
    x509.X509CertificateGenerator.create(
      {
        serialNumber: input.serial,
        subject: input.subject,
        issuer: input.issuer.subjectName,
        notBefore: input.notBefore,
        notAfter: input.notAfter,
        publicKey,
        signingKey,
        signingAlgorithm: input.signer.signingAlgorithm,
        extensions,
      },
      asWebCrypto(crypto),
    ),
  );
}
