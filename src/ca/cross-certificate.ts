import * as x509 from "@peculiar/x509";
import { asWebCrypto } from "../hsm/signing-crypto.ts";
import type { Signer } from "../hsm/key-manager.ts";
import { authorityKeyIdentifier } from "./authority-key-identifier.ts";
import { revocationExtensions, type RevocationPointers } from "./revocation-pointers.ts";

/**
 * Another certificate for an existing CA: the same subject, public key and
 * subjectKeyIdentifier as `of`, signed by a different CA (`issuer`). A root
 * cross-signed by the old root, or an intermediate re-signed under a new
 * root: relying parties build a path through whichever version they can
 * chain to their trust anchor. The SKI is copied, not recomputed, so that
 * the authorityKeyIdentifier of everything `of` signed matches either one.
 */
export function buildCrossCertificate(input: {
  of: x509.X509Certificate;
  issuer: x509.X509Certificate;
  signer: Signer;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  pathLength: number;
  revocation?: RevocationPointers;
}): Promise<x509.X509Certificate> {
  const ski = input.of.getExtension(x509.SubjectKeyIdentifierExtension);
  if (!ski) throw new Error(`${input.of.subject} has no subjectKeyIdentifier`);
  return input.signer.use((signingKey, crypto) =>
    x509.X509CertificateGenerator.create(
      {
        serialNumber: input.serial,
        subject: input.of.subjectName,
        issuer: input.issuer.subjectName,
        notBefore: input.notBefore,
        notAfter: input.notAfter,
        publicKey: input.of.publicKey,
        signingKey,
        signingAlgorithm: input.signer.signingAlgorithm,
        extensions: [
          new x509.BasicConstraintsExtension(true, input.pathLength, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
          new x509.SubjectKeyIdentifierExtension(ski.keyId, false),
          authorityKeyIdentifier(input.issuer),
          ...(input.revocation ? revocationExtensions(input.revocation) : []),
        ],
      },
      asWebCrypto(crypto),
    ),
  );
}
