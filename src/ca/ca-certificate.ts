import * as x509 from "@peculiar/x509";
import { asWebCrypto } from "../hsm/signing-crypto.ts";
import { authorityKeyIdentifier } from "./authority-key-identifier.ts";
import { revocationExtensions, type RevocationPointers } from "./revocation-pointers.ts";
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
          issuer ? authorityKeyIdentifier(issuer) : new x509.AuthorityKeyIdentifierExtension(ski.keyId),
          ...(revocation ? revocationExtensions(revocation) : []),
        ],
      },
      asWebCrypto(crypto),
    ),
  );
}

