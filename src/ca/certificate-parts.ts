import crypto from "node:crypto";
import * as x509 from "@peculiar/x509";
import { concat, contextTag, sequence, tlv } from "../asn1/der-writer.ts";
import { TAG } from "../asn1/tags.ts";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import { authorityKeyIdentifier } from "./authority-key-identifier.ts";
import { certificateFields, subjectPublicKeyBits } from "./certificate-fields.ts";
import type { LeafTemplate } from "./leaf-template.ts";
import { nameConstraintsExtension } from "./name-constraints.ts";
import { revocationExtensions as revocationExtensionObjects, type RevocationPointers } from "./revocation-pointers.ts";
import { signatureAlgorithmDer } from "./signature.ts";

/**
 * The DER pieces of the certificates hsm-ca signs per request (leaves and
 * sub-CAs): what the issuer fixes and what a profile fixes is encoded once
 * (by @peculiar/x509, whose encoders cost tenths of a millisecond each) and
 * reused; what differs per certificate is written here by hand.
 */

export const VERSION_3 = contextTag(0, true, Uint8Array.of(TAG.INTEGER, 1, 2));

/** [3] EXPLICIT Extensions. */
export function extensionsField(extensions: Uint8Array[]): Uint8Array {
  return contextTag(3, true, sequence(...extensions));
}

// ---------------------------------------------------------------------------
// Parts fixed by the issuer

export interface IssuerParts {
  signatureAlgorithm: Uint8Array;
  /** The issuer's subject exactly as its certificate encodes it: name chaining compares bytes. */
  issuerName: Uint8Array;
  authorityKeyIdentifier: Uint8Array;
}

const issuerPartsCache = new WeakMap<x509.X509Certificate, Map<CaKeyAlgorithm, IssuerParts>>();

export function issuerParts(issuer: x509.X509Certificate, algorithm: CaKeyAlgorithm): IssuerParts {
  let byAlgorithm = issuerPartsCache.get(issuer);
  if (!byAlgorithm) issuerPartsCache.set(issuer, (byAlgorithm = new Map()));
  let parts = byAlgorithm.get(algorithm);
  if (!parts) {
    parts = {
      signatureAlgorithm: signatureAlgorithmDer(algorithm),
      // The bytes themselves, not a re-encoding: an external CA's name may use string types a re-encoder would change.
      issuerName: certificateFields(new Uint8Array(issuer.rawData)).subject,
      authorityKeyIdentifier: new Uint8Array(authorityKeyIdentifier(issuer).rawData),
    };
    byAlgorithm.set(algorithm, parts);
  }
  return parts;
}

// ---------------------------------------------------------------------------
// Parts fixed by the profile: encoded by @peculiar/x509 once, then reused

export const BASIC_CONSTRAINTS_END_ENTITY = new Uint8Array(new x509.BasicConstraintsExtension(false, undefined, true).rawData);

const keyUsageCache = new Map<string, Uint8Array>();
export function keyUsageExtension(usages: LeafTemplate["keyUsage"]): Uint8Array {
  const key = usages.join(",");
  let der = keyUsageCache.get(key);
  if (!der) {
    const flags = usages.reduce((f, u) => f | x509.KeyUsageFlags[u], 0);
    keyUsageCache.set(key, (der = new Uint8Array(new x509.KeyUsagesExtension(flags, true).rawData)));
  }
  return der;
}

const ekuCache = new Map<string, Uint8Array>();
export function extendedKeyUsageExtension(oids: string[]): Uint8Array {
  const key = oids.join(",");
  let der = ekuCache.get(key);
  if (!der) ekuCache.set(key, (der = new Uint8Array(new x509.ExtendedKeyUsageExtension(oids, false).rawData)));
  return der;
}

const revocationCache = new Map<string, Uint8Array>();
export function revocationExtensions(r: RevocationPointers): Uint8Array {
  const key = `${r.crlUrl} ${r.ocspUrl} ${r.caIssuersUrl}`;
  let der = revocationCache.get(key);
  if (!der) {
    if (revocationCache.size > 1000) revocationCache.clear();
    der = concat(revocationExtensionObjects(r).map((e) => new Uint8Array(e.rawData)));
    revocationCache.set(key, der);
  }
  return der;
}

// ---------------------------------------------------------------------------
// Parts written per certificate

const OID_SKI = Uint8Array.of(0x06, 0x03, 0x55, 0x1d, 0x0e);

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING's bits. */
export function subjectKeyIdentifier(spki: Uint8Array): Uint8Array {
  const id = crypto.createHash("sha1").update(subjectPublicKeyBits(spki)).digest();
  return sequence(OID_SKI, tlv(TAG.OCTET_STRING, tlv(TAG.OCTET_STRING, id)));
}

export function wholeSeconds(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}

const caBasicConstraints = new Map<number, Uint8Array>();

/** basicConstraints cA TRUE with this pathLen, critical. */
export function caBasicConstraintsExtension(pathLength: number): Uint8Array {
  let der = caBasicConstraints.get(pathLength);
  if (!der) caBasicConstraints.set(pathLength, (der = new Uint8Array(new x509.BasicConstraintsExtension(true, pathLength, true).rawData)));
  return der;
}

const nameConstraintsCache = new Map<string, Uint8Array>();

/** A CA profile's nameConstraints extension (critical), encoded once per distinct set. */
export function cachedNameConstraintsExtension(constraints: Parameters<typeof nameConstraintsExtension>[0]): Uint8Array {
  const key = JSON.stringify(constraints);
  let der = nameConstraintsCache.get(key);
  if (!der) {
    if (nameConstraintsCache.size > 100) nameConstraintsCache.clear();
    nameConstraintsCache.set(key, (der = new Uint8Array(nameConstraintsExtension(constraints).rawData)));
  }
  return der;
}
