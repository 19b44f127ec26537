import * as x509 from "@peculiar/x509";
import { authorityKeyIdentifier } from "./authority-key-identifier.ts";
import { generateAfterLint } from "./signed-after-lint.ts";
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

/** A self-signed root: CA true, with the path length it is given (how many CA levels may follow it). */
export function buildRootCertificate(input: CaCertificateInput & { pathLength: number }): Promise<x509.X509Certificate> {
  return buildCaCertificate(input, input.pathLength);
}

/** An intermediate signed by its parent: CA true, pathLen as given; it points at the parent's CRL when given. */
export function buildIntermediateCertificate(
  input: CaCertificateInput & { issuer: x509.X509Certificate; pathLength: number; revocation?: RevocationPointers },
): Promise<x509.X509Certificate> {
  return buildCaCertificate(input, input.pathLength, input.issuer, input.revocation);
}

/** The pathLenConstraint of a CA certificate; undefined when it sets none (unlimited). */
export function pathLengthOf(cert: x509.X509Certificate): number | undefined {
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  return bc?.pathLength;
}

/** The path length a CA signed by `issuer` may have at most: one less than the issuer's, or `wanted` when the issuer sets none. */
export function pathLengthUnder(issuer: x509.X509Certificate, wanted: number): number {
  const limit = pathLengthOf(issuer);
  return limit === undefined ? wanted : Math.max(0, Math.min(wanted, limit - 1));
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
  // Written with a throwaway key, linted, and only then signed by the CA key (src/lint).
  return generateAfterLint(
    {
      serialNumber: input.serial,
      subject: input.subject,
      issuer: issuer ? issuer.subjectName : input.subject,
      notBefore: input.notBefore,
      notAfter: input.notAfter,
      publicKey,
      extensions: [
        new x509.BasicConstraintsExtension(true, pathLength, true),
        new x509.KeyUsagesExtension(CA_KEY_USAGE, true),
        ski,
        issuer ? authorityKeyIdentifier(issuer) : new x509.AuthorityKeyIdentifierExtension(ski.keyId),
        ...(revocation ? revocationExtensions(revocation) : []),
      ],
    },
    input.signer,
    {
      role: issuer ? "intermediate" : "root",
      issuer,
      template: { notBefore: input.notBefore, notAfter: input.notAfter, pathLength, keyUsage: ["keyCertSign", "cRLSign"] },
    },
  );
}
