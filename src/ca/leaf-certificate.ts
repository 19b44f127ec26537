import crypto from "node:crypto";
import * as x509 from "@peculiar/x509";
import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate } from "@peculiar/asn1-x509";
import { concat, contextTag, integerFromHex, sequence, time, tlv } from "../asn1/der-writer.ts";
import { derToPem } from "../asn1/pem.ts";
import { TAG } from "../asn1/tags.ts";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import type { LintContext } from "../lint/certificate-expectations.ts";
import { lintCertificate } from "../lint/certificate.ts";
import { authorityKeyIdentifier } from "./authority-key-identifier.ts";
import { subjectPublicKeyBits } from "./certificate-fields.ts";
import type { LeafTemplate } from "./leaf-template.ts";
import { revocationExtensions as revocationExtensionObjects, type RevocationPointers } from "./revocation-pointers.ts";
import { signatureAlgorithmDer, signTbs } from "./signature.ts";
import type { Signer } from "../hsm/key-manager.ts";
import { subjectAltName } from "./subject-alt-name.ts";
import { subjectName, subjectString } from "./subject-name.ts";

/**
 * End-entity certificates assembled from DER pieces. What a profile and an
 * issuer fix (basic constraints, key usage, EKU, the issuer's name and key
 * identifier, CRL and OCSP pointers) is encoded once and reused; per
 * request only the serial, validity, subject, key, its identifier and the
 * SANs are written. @peculiar/x509's generator built the same bytes (the
 * tests compare the two TBSCertificates byte for byte) at about a tenth of
 * the rate: an object per ASN.1 node and a schema walk per certificate.
 * Issuance is the hot path docs/benchmarks.md measures ("REST issuance end
 * to end"), which is why this stays hand-written.
 */

export interface LeafInput {
  /** What policy decided the certificate says. */
  decision: LeafTemplate;
  /** SubjectPublicKeyInfo, DER, exactly as the CSR carried it. */
  spki: ArrayBuffer | Uint8Array;
  serial: string;
  issuer: x509.X509Certificate;
  /** The issuing key's algorithm: it names the signature. */
  algorithm: CaKeyAlgorithm;
  signer: Signer;
  revocation?: RevocationPointers;
  /** What the lint gate needs beyond the template: the CAs above the issuer, the profile's name rules. */
  lint?: LintContext;
}

export interface LeafCertificate {
  der: Uint8Array<ArrayBuffer>;
  pem: string;
  /** The subject as @peculiar/x509 writes names ("CN=a, O=b"). */
  subject: string;
  /** Validity as encoded: whole seconds. */
  notBefore: Date;
  notAfter: Date;
}

/** An end-entity certificate exactly as the profile decided it, signed by the issuer's key. */
export async function buildLeafCertificate(input: LeafInput): Promise<LeafCertificate> {
  const { decision } = input;
  const notBefore = wholeSeconds(decision.notBefore);
  const notAfter = wholeSeconds(decision.notAfter);
  const spki = input.spki instanceof Uint8Array ? input.spki : new Uint8Array(input.spki);
  const fixed = issuerParts(input.issuer, input.algorithm);
  const extensions: Uint8Array[] = [
    BASIC_CONSTRAINTS_END_ENTITY,
    keyUsageExtension(decision.keyUsage),
    extendedKeyUsageExtension(decision.extendedKeyUsage),
    subjectKeyIdentifier(spki),
    fixed.authorityKeyIdentifier,
  ];
  if (decision.sans.length > 0) extensions.push(subjectAltName(decision.sans, decision.sanCritical));
  if (input.revocation) extensions.push(revocationExtensions(input.revocation));
  const tbs = sequence(
    VERSION_3,
    integerFromHex(input.serial),
    fixed.signatureAlgorithm,
    fixed.issuerName,
    sequence(time(notBefore), time(notAfter)),
    subjectName(decision.subject),
    spki,
    contextTag(3, true, sequence(...extensions)),
  );
  // Nothing reaches the CA key before the gate passes it (src/lint; docs/lint.md).
  await lintCertificate({ role: "leaf", tbs, algorithm: input.algorithm, serial: input.serial, issuer: input.issuer, template: { ...decision }, ...input.lint });
  const signature = await signTbs(input.signer, input.algorithm, tbs);
  // der.ts allocates plain ArrayBuffers.
  const der = sequence(tbs, fixed.signatureAlgorithm, tlv(TAG.BIT_STRING, Uint8Array.of(0), signature)) as Uint8Array<ArrayBuffer>;
  return { der, pem: derToPem(der, "CERTIFICATE"), subject: subjectString(decision.subject), notBefore, notAfter };
}

// ---------------------------------------------------------------------------
// Parts fixed by the issuer

const VERSION_3 = contextTag(0, true, Uint8Array.of(TAG.INTEGER, 1, 2));

interface IssuerParts {
  signatureAlgorithm: Uint8Array;
  /** The issuer's subject exactly as its certificate encodes it: name chaining compares bytes. */
  issuerName: Uint8Array;
  authorityKeyIdentifier: Uint8Array;
}

const issuerPartsCache = new WeakMap<x509.X509Certificate, Map<CaKeyAlgorithm, IssuerParts>>();

function issuerParts(issuer: x509.X509Certificate, algorithm: CaKeyAlgorithm): IssuerParts {
  let byAlgorithm = issuerPartsCache.get(issuer);
  if (!byAlgorithm) issuerPartsCache.set(issuer, (byAlgorithm = new Map()));
  let parts = byAlgorithm.get(algorithm);
  if (!parts) {
    const cert = AsnConvert.parse(issuer.rawData, Certificate);
    parts = {
      signatureAlgorithm: signatureAlgorithmDer(algorithm),
      issuerName: new Uint8Array(AsnConvert.serialize(cert.tbsCertificate.subject)),
      authorityKeyIdentifier: new Uint8Array(authorityKeyIdentifier(issuer).rawData),
    };
    byAlgorithm.set(algorithm, parts);
  }
  return parts;
}

// ---------------------------------------------------------------------------
// Parts fixed by the profile: encoded by @peculiar/x509 once, then reused

const BASIC_CONSTRAINTS_END_ENTITY = new Uint8Array(new x509.BasicConstraintsExtension(false, undefined, true).rawData);

const keyUsageCache = new Map<string, Uint8Array>();
function keyUsageExtension(usages: LeafTemplate["keyUsage"]): Uint8Array {
  const key = usages.join(",");
  let der = keyUsageCache.get(key);
  if (!der) {
    const flags = usages.reduce((f, u) => f | x509.KeyUsageFlags[u], 0);
    keyUsageCache.set(key, (der = new Uint8Array(new x509.KeyUsagesExtension(flags, true).rawData)));
  }
  return der;
}

const ekuCache = new Map<string, Uint8Array>();
function extendedKeyUsageExtension(oids: string[]): Uint8Array {
  const key = oids.join(",");
  let der = ekuCache.get(key);
  if (!der) ekuCache.set(key, (der = new Uint8Array(new x509.ExtendedKeyUsageExtension(oids, false).rawData)));
  return der;
}

const revocationCache = new Map<string, Uint8Array>();
function revocationExtensions(r: RevocationPointers): Uint8Array {
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
function subjectKeyIdentifier(spki: Uint8Array): Uint8Array {
  const id = crypto.createHash("sha1").update(subjectPublicKeyBits(spki)).digest();
  return sequence(OID_SKI, tlv(TAG.OCTET_STRING, tlv(TAG.OCTET_STRING, id)));
}

function wholeSeconds(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}
