import crypto from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import { BasicOCSPResponse, CertID } from "@peculiar/asn1-ocsp";
import { Certificate } from "@peculiar/asn1-x509";
import type * as x509 from "@peculiar/x509";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import { signedEnvelope, SIGNATURE_ALGORITHMS } from "./der-envelope.ts";
import { lintEnabled, refuse } from "./gate.ts";
import type { Violation } from "./lint-failure.ts";
import { throwawaySignature } from "./throwaway-keys.ts";

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

/** The gate for OCSP responses (RFC 6960 §4.2, RFC 5019): throws LintFailure, signing nothing. */
export async function lintOcspResponse(input: OcspLintInput): Promise<void> {
  if (!lintEnabled()) return;
  const violations = await ocspViolations(input);
  if (violations.length) refuse("ocsp-response", violations, { serial: input.serial, responder: input.responder.subject, status: input.status });
}

export async function ocspViolations(input: OcspLintInput): Promise<Violation[]> {
  const out: Violation[] = [];
  const der = signedEnvelope(input.tbs, SIGNATURE_ALGORITHMS[input.algorithm], await throwawaySignature(input.algorithm, input.tbs));
  let basic: BasicOCSPResponse;
  try {
    basic = AsnConvert.parse(der, BasicOCSPResponse);
  } catch (err) {
    return [{ rule: "der-decode", detail: `the BasicOCSPResponse does not decode: ${(err as Error).message}` }];
  }
  const data = basic.tbsResponseData;
  if (data.version !== 0) out.push({ rule: "version", detail: "ResponseData is not v1" });

  // ResponderID byKey (RFC 5019 §2.2.3): SHA-1 of the responder key's BIT STRING bits.
  const keyHash = responderKeyHash(input.responder);
  if (!data.responderID.byKey || !Buffer.from(data.responderID.byKey.buffer).equals(keyHash)) {
    out.push({ rule: "ocsp-responder-id", detail: "the ResponderID is not byKey with the SHA-1 of the responder certificate's key" });
  }

  // Times: thisUpdate <= producedAt, nextUpdate after thisUpdate, the ones asked for, inside the responder certificate's validity.
  const producedAt = data.producedAt;
  if (producedAt.getTime() !== seconds(input.producedAt)) out.push({ rule: "ocsp-times", detail: "producedAt is not the one asked for" });
  if (input.responder.notBefore > producedAt || input.responder.notAfter < producedAt) {
    out.push({ rule: "ocsp-responder-validity", detail: `producedAt ${producedAt.toISOString()} is outside the responder certificate's validity` });
  }
  if (data.responses.length !== 1) out.push({ rule: "ocsp-single-response", detail: `${data.responses.length} SingleResponses, not one (RFC 5019 §2.2.1)` });
  const single = data.responses[0];
  if (single) {
    if (!Buffer.from(AsnConvert.serialize(single.certID)).equals(Buffer.from(input.certIdDer))) out.push({ rule: "ocsp-cert-id", detail: "the response's CertID is not the one asked about" });
    let asked: CertID | undefined;
    try {
      asked = AsnConvert.parse(Buffer.from(input.certIdDer), CertID);
    } catch {
      out.push({ rule: "ocsp-cert-id", detail: "the CertID asked about does not decode" });
    }
    if (asked && stripSign(Buffer.from(asked.serialNumber)) !== input.serial.replace(/^(00)+(?=.)/, "").toLowerCase()) {
      out.push({ rule: "ocsp-cert-id", detail: `the CertID's serial is not ${input.serial}` });
    }
    if (asked && !input.delegated && asked.hashAlgorithm.algorithm === OID_SHA1 && !Buffer.from(asked.issuerKeyHash.buffer).equals(keyHash)) {
      out.push({ rule: "ocsp-cert-id", detail: "the CertID's issuerKeyHash is not the signing CA's key" });
    }
    const thisUpdate = single.thisUpdate;
    const nextUpdate = single.nextUpdate;
    if (thisUpdate.getTime() !== seconds(input.thisUpdate)) out.push({ rule: "ocsp-times", detail: "thisUpdate is not the one asked for" });
    if (thisUpdate.getTime() > producedAt.getTime() + SKEW_MS) out.push({ rule: "ocsp-times", detail: `thisUpdate ${thisUpdate.toISOString()} is after producedAt ${producedAt.toISOString()}` });
    if (!nextUpdate) out.push({ rule: "ocsp-times", detail: "no nextUpdate (RFC 5019 §2.2.4)" });
    else if (nextUpdate.getTime() <= thisUpdate.getTime()) out.push({ rule: "ocsp-times", detail: `nextUpdate ${nextUpdate.toISOString()} is not after thisUpdate` });
    const status = single.certStatus;
    const decoded = status.good !== undefined ? "good" : status.revoked ? "revoked" : status.unknown !== undefined ? "unknown" : "none";
    if (decoded !== input.status) out.push({ rule: "ocsp-status", detail: `certStatus ${decoded} is not the ${input.status} asked for` });
    if (status.revoked && status.revoked.revocationTime.getTime() > thisUpdate.getTime() + SKEW_MS) out.push({ rule: "ocsp-status", detail: "revocationTime after thisUpdate" });
  }
  const nonce = data.responseExtensions?.find((e) => e.extnID === OID_NONCE);
  const echoed = nonce ? Buffer.from(nonce.extnValue.buffer).subarray(2) : undefined;
  if (!!input.nonce !== !!nonce || (input.nonce && echoed && !echoed.equals(Buffer.from(input.nonce)))) out.push({ rule: "ocsp-nonce", detail: "the nonce is not the request's, echoed" });
  for (const e of data.responseExtensions ?? []) if (e.critical) out.push({ rule: "extension-unknown-critical", detail: `a critical response extension ${e.extnID}` });
  return out;
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
