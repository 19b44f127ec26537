import crypto from "node:crypto";
import * as x509 from "@peculiar/x509";
import { sequence, tlv } from "../asn1/der-writer.ts";
import { TAG } from "../asn1/tags.ts";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import type { Signer } from "../hsm/key-manager.ts";
import type { CertificateLintInput } from "../lint/certificate-expectations.ts";
import { lintCertificate } from "../lint/certificate.ts";
import { firstElement } from "../lint/der-envelope.ts";
import { throwawayKey } from "../lint/throwaway-keys.ts";
import { signatureAlgorithmDer, signTbs } from "./signature.ts";

type GeneratorParams = Omit<x509.X509CertificateCreateWithKeyParams, "signingKey" | "signingAlgorithm">;

/**
 * A certificate @peculiar/x509's generator writes (roots, intermediates,
 * OCSP responders): written once with the throwaway key of the CA key's
 * algorithm, linted, and only then are those exact TBSCertificate bytes
 * signed by the CA key.
 */
export async function generateAfterLint(
  params: GeneratorParams,
  signer: Signer,
  lint: Omit<CertificateLintInput, "tbs" | "algorithm" | "serial">,
): Promise<x509.X509Certificate> {
  const algorithm = caKeyAlgorithmOf(lint.issuer ? new Uint8Array(lint.issuer.publicKey.rawData) : toBytes(params.publicKey));
  const throwaway = await throwawayKey(algorithm);
  const draft = await x509.X509CertificateGenerator.create(
    { ...params, signingKey: throwaway.cryptoKey, signingAlgorithm: signer.signingAlgorithm },
    globalThis.crypto,
  );
  const tbs = firstElement(new Uint8Array(draft.rawData));
  await lintCertificate({ ...lint, tbs, algorithm, serial: params.serialNumber });
  const signature = await signTbs(signer, algorithm, tbs);
  const sigAlg = signatureAlgorithmDer(algorithm);
  return new x509.X509Certificate(sequence(tbs, sigAlg, tlv(TAG.BIT_STRING, Uint8Array.of(0), signature)) as Uint8Array<ArrayBuffer>);
}

function toBytes(key: GeneratorParams["publicKey"]): Uint8Array {
  if (key instanceof x509.PublicKey) return new Uint8Array(key.rawData);
  throw new Error("generateAfterLint: a self-signed certificate's public key must be an x509.PublicKey");
}

/** The CA key algorithm of a SubjectPublicKeyInfo (the signing key's: the issuer's, or the root's own). */
export function caKeyAlgorithmOf(spki: Uint8Array): CaKeyAlgorithm {
  const key = crypto.createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === "ec" && d.namedCurve === "prime256v1") return "ecdsa-p256";
  if (key.asymmetricKeyType === "ec" && d.namedCurve === "secp384r1") return "ecdsa-p384";
  if (key.asymmetricKeyType === "rsa" && [2048, 3072, 4096].includes(d.modulusLength ?? 0)) return `rsa-${d.modulusLength}` as CaKeyAlgorithm;
  throw new Error(`not a CA key algorithm hsm-ca signs with: ${key.asymmetricKeyType} ${JSON.stringify(d)}`);
}
