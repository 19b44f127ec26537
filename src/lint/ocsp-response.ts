import crypto from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate } from "@peculiar/asn1-x509";
import type * as x509 from "@peculiar/x509";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import { decodeExtension, type DecodedExtension } from "./decoded-certificate.ts";
import { DerError, DerReader, TAGS, children, readOid, readSmallInteger, readTime, type Element } from "./der.ts";
import { lintEnabled, refuse } from "./gate.ts";
import type { Violation } from "./lint-failure.ts";

export interface OcspLintInput {
  /** The DER ResponseData about to be signed. */
  tbs: Uint8Array;
  algorithm: CaKeyAlgorithm;
  /** The responder's certificate: a delegated responder's, or the CA's own. */
  responder: x509.X509Certificate;
  delegated: boolean;
  /** The CertID asked about, DER, and its serial (hex). */
  certIdDer: Uint8Array;
  serial: string;
  status: "good" | "revoked" | "unknown";
  producedAt: Date;
  thisUpdate: Date;
  nextUpdate: Date;
  nonce?: Uint8Array;
}

/** A clock that runs this far ahead of producedAt is not taken for a broken response. */
const SKEW_MS = 5 * 60_000;
const OID_NONCE = "1.3.6.1.5.5.7.48.1.2";
const OID_SHA1 = "1.3.14.3.2.26";

/**
 * The gate for OCSP responses (RFC 6960 §4.2, RFC 5019): the ResponseData
 * read by the gate's own strict DER reader (src/lint/der.ts; the library
 * decoder cost about 0.5 ms a response) and checked. Throws LintFailure,
 * signing nothing.
 */
export async function lintOcspResponse(input: OcspLintInput): Promise<void> {
  if (!lintEnabled()) return;
  const violations = await ocspViolations(input);
  if (violations.length) refuse("ocsp-response", violations, { serial: input.serial, responder: input.responder.subject, status: input.status });
}

export async function ocspViolations(input: OcspLintInput): Promise<Violation[]> {
  let data: DecodedResponseData;
  try {
    data = decodeResponseData(input.tbs);
  } catch (err) {
    if (err instanceof DerError) return [{ rule: err.rule, detail: `the ResponseData: ${err.message}` }];
    throw err;
  }
  const out: Violation[] = [];
  if (data.version !== 0) out.push({ rule: "version", detail: "ResponseData is not v1" });

  // ResponderID byKey (RFC 5019 §2.2.3): SHA-1 of the responder key's BIT STRING bits.
  const keyHash = responderKeyHash(input.responder);
  if (!data.responderKeyHash || !Buffer.from(data.responderKeyHash).equals(keyHash)) {
    out.push({ rule: "ocsp-responder-id", detail: "the ResponderID is not byKey with the SHA-1 of the responder certificate's key" });
  }

  // Times: thisUpdate <= producedAt, nextUpdate after thisUpdate, the ones asked for, inside the responder certificate's validity.
  const producedAt = data.producedAt;
  if (!producedAt) return [...out, { rule: "ocsp-times", detail: "producedAt is not a GeneralizedTime in DER form" }];
  if (producedAt.getTime() !== seconds(input.producedAt)) out.push({ rule: "ocsp-times", detail: "producedAt is not the one asked for" });
  if (input.responder.notBefore > producedAt || input.responder.notAfter < producedAt) {
    out.push({ rule: "ocsp-responder-validity", detail: `producedAt ${producedAt.toISOString()} is outside the responder certificate's validity` });
  }
  if (data.responses.length !== 1) out.push({ rule: "ocsp-single-response", detail: `${data.responses.length} SingleResponses, not one (RFC 5019 §2.2.1)` });
  const single = data.responses[0];
  if (single) {
    if (!Buffer.from(single.certIdDer).equals(Buffer.from(input.certIdDer))) out.push({ rule: "ocsp-cert-id", detail: "the response's CertID is not the one asked about" });
    let asked: DecodedCertId | undefined;
    try {
      asked = decodeCertId(input.certIdDer);
    } catch (err) {
      if (!(err instanceof DerError)) throw err;
      out.push({ rule: "ocsp-cert-id", detail: "the CertID asked about does not decode" });
    }
    if (asked && stripSign(Buffer.from(asked.serial)) !== input.serial.replace(/^(00)+(?=.)/, "").toLowerCase()) {
      out.push({ rule: "ocsp-cert-id", detail: `the CertID's serial is not ${input.serial}` });
    }
    if (asked && !input.delegated && asked.hashAlgorithm === OID_SHA1 && !Buffer.from(asked.issuerKeyHash).equals(keyHash)) {
      out.push({ rule: "ocsp-cert-id", detail: "the CertID's issuerKeyHash is not the signing CA's key" });
    }
    const { thisUpdate, nextUpdate } = single;
    if (!thisUpdate) out.push({ rule: "ocsp-times", detail: "thisUpdate is not a GeneralizedTime in DER form" });
    else {
      if (thisUpdate.getTime() !== seconds(input.thisUpdate)) out.push({ rule: "ocsp-times", detail: "thisUpdate is not the one asked for" });
      if (thisUpdate.getTime() > producedAt.getTime() + SKEW_MS) out.push({ rule: "ocsp-times", detail: `thisUpdate ${thisUpdate.toISOString()} is after producedAt ${producedAt.toISOString()}` });
      if (!nextUpdate) out.push({ rule: "ocsp-times", detail: "no nextUpdate (RFC 5019 §2.2.4)" });
      else if (nextUpdate.getTime() <= thisUpdate.getTime()) out.push({ rule: "ocsp-times", detail: `nextUpdate ${nextUpdate.toISOString()} is not after thisUpdate` });
      if (single.revocationTime && single.revocationTime.getTime() > thisUpdate.getTime() + SKEW_MS) out.push({ rule: "ocsp-status", detail: "revocationTime after thisUpdate" });
    }
    if (single.status !== input.status) out.push({ rule: "ocsp-status", detail: `certStatus ${single.status} is not the ${input.status} asked for` });
  }
  const nonce = data.extensions.find((e) => e.id === OID_NONCE);
  const echoed = nonce ? nonceOf(nonce.value) : undefined;
  if (!!input.nonce !== !!nonce || (input.nonce && !(echoed && echoed.equals(Buffer.from(input.nonce))))) out.push({ rule: "ocsp-nonce", detail: "the nonce is not the request's, echoed" });
  for (const e of data.extensions) if (e.critical) out.push({ rule: "extension-unknown-critical", detail: `a critical response extension ${e.id}` });
  return out;
}

interface DecodedResponseData {
  version: number;
  /** byKey's hash; undefined for byName. */
  responderKeyHash?: Uint8Array;
  producedAt?: Date;
  responses: Array<{ certIdDer: Uint8Array; status: "good" | "revoked" | "unknown" | "none"; revocationTime?: Date; thisUpdate?: Date; nextUpdate?: Date }>;
  extensions: DecodedExtension[];
}

interface DecodedCertId {
  hashAlgorithm: string;
  issuerKeyHash: Uint8Array;
  serial: Uint8Array;
}

/** RFC 6960 §4.2.1 ResponseData, by the gate's own strict DER reader. */
function decodeResponseData(tbs: Uint8Array): DecodedResponseData {
  const outer = new DerReader(tbs, "ResponseData");
  const r = new DerReader(outer.next(TAGS.SEQUENCE).content, "ResponseData");
  outer.end();
  const versionTag = r.optional(0xa0);
  const version = versionTag ? readSmallInteger(new DerReader(versionTag.content, "version").next(), "version") : 0;
  if (versionTag && version === 0) throw new DerError("der-canonical", "version v1 written out (DER omits a DEFAULT value)");
  const responder = r.next();
  let responderKeyHash: Uint8Array | undefined;
  if (responder.tag === 0xa2) responderKeyHash = new DerReader(responder.content, "ResponderID byKey").next(TAGS.OCTET_STRING).content;
  else if (responder.tag !== 0xa1) throw new DerError("der-decode", "a ResponderID that is neither byName nor byKey");
  const producedAt = generalizedTime(r.next());
  const responses = children(r.next(TAGS.SEQUENCE), "responses").map(decodeSingleResponse);
  const extensionsTag = r.optional(0xa1);
  r.end();
  const extensions = extensionsTag ? children(new DerReader(extensionsTag.content, "responseExtensions").next(TAGS.SEQUENCE), "responseExtensions").map(decodeExtension) : [];
  return { version, responderKeyHash, producedAt, responses, extensions };
}

function decodeSingleResponse(e: Element): DecodedResponseData["responses"][number] {
  const r = new DerReader(e.content, "SingleResponse");
  const certIdDer = r.next(TAGS.SEQUENCE).der;
  const status = r.next();
  let kind: "good" | "revoked" | "unknown" | "none" = "none";
  let revocationTime: Date | undefined;
  if (status.tag === 0x80 && status.content.length === 0) kind = "good";
  else if (status.tag === 0x82 && status.content.length === 0) kind = "unknown";
  else if (status.tag === 0xa1) {
    kind = "revoked";
    const info = new DerReader(status.content, "RevokedInfo");
    revocationTime = generalizedTime(info.next());
    info.optional(0xa0);
    info.end();
  }
  const thisUpdate = generalizedTime(r.next());
  const next = r.optional(0xa0);
  const nextUpdate = next ? generalizedTime(new DerReader(next.content, "nextUpdate").next()) : undefined;
  r.optional(0xa1);
  r.end();
  return { certIdDer, status: kind, revocationTime, thisUpdate, nextUpdate };
}

function decodeCertId(der: Uint8Array): DecodedCertId {
  const outer = new DerReader(der, "CertID");
  const r = new DerReader(outer.next(TAGS.SEQUENCE).content, "CertID");
  outer.end();
  const hashAlgorithm = readOid(new DerReader(r.next(TAGS.SEQUENCE).content, "hashAlgorithm").next(), "hashAlgorithm");
  r.next(TAGS.OCTET_STRING);
  const issuerKeyHash = r.next(TAGS.OCTET_STRING).content;
  const serial = r.next(TAGS.INTEGER).content;
  r.end();
  return { hashAlgorithm, issuerKeyHash, serial };
}

function generalizedTime(e: Element): Date | undefined {
  const t = e.tag === TAGS.GENERALIZED_TIME ? readTime(e)?.generalTime : undefined;
  return t && !Number.isNaN(t.getTime()) ? t : undefined;
}

/** The Nonce extension's value: an OCTET STRING holding the nonce (RFC 6960 §4.4.1, RFC 8954). */
function nonceOf(value: Uint8Array): Buffer | undefined {
  try {
    return Buffer.from(new DerReader(value, "nonce").next(TAGS.OCTET_STRING).content);
  } catch {
    return undefined;
  }
}

const keyHashes = new WeakMap<x509.X509Certificate, Buffer>();
function responderKeyHash(cert: x509.X509Certificate): Buffer {
  let h = keyHashes.get(cert);
  if (!h) {
    const bits = AsnConvert.parse(cert.rawData, Certificate).tbsCertificate.subjectPublicKeyInfo.subjectPublicKey;
    keyHashes.set(cert, (h = crypto.createHash("sha1").update(new Uint8Array(bits)).digest()));
  }
  return h;
}

function stripSign(b: Buffer): string {
  return b.toString("hex").replace(/^(00)+(?=.)/, "");
}

function seconds(d: Date): number {
  return Math.floor(d.getTime() / 1000) * 1000;
}
