import { createHash } from "node:crypto";
import type * as x509 from "@peculiar/x509";
import { generalizedTime, sequence as seq, tlv } from "../asn1/der-writer.ts";
import { readTlv } from "../asn1/der-reader.ts";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import { lintOcspResponse } from "../lint/ocsp-response.ts";
import { certificateFields } from "./certificate-fields.ts";
import { CRL_REASONS } from "./crl-reasons.ts";
import type { OcspCertId } from "./ocsp-cert-id.ts";
import { MAX_NONCE, OID_NONCE } from "./ocsp-request.ts";
import { signatureAlgorithmDer, signTbs } from "./signature.ts";
import type { Signer } from "../hsm/key-manager.ts";

/**
 * OCSP responses (RFC 6960 §4.2) in the RFC 5019 profile: one
 * SingleResponse, signed by a delegated responder or by the CA itself,
 * ResponderID byKey.
 *
 * Written by hand with the shared DER writer, not as @peculiar/asn1-ocsp
 * objects: every response the responder pre-signs (HSM_CA_OCSP_SIGN_RATE,
 * 200/s by default), every cache miss and every nonce request is built here
 * on the way to an answer, and docs/benchmarks.md ("OCSP from the pre-signed
 * cache") holds the responder to about 6,000 answers a second. Serialising
 * the same OCSPResponse through asn1-ocsp took about 20 times as long as this
 * writer (some 1 ms against 50 µs, measured on the 2-core bench machine
 * under load), more than the HSM signature itself.
 */

const OID_BASIC = "2b0601050507300101"; // 1.3.6.1.5.5.7.48.1.1, id-pkix-ocsp-basic
const OID_EC_PUBLIC_KEY = "2a8648ce3d0201"; // 1.2.840.10045.2.1
const OID_RSA_ENCRYPTION = "2a864886f70d010101"; // 1.2.840.113549.1.1.1

export type CertStatus = { status: "good" } | { status: "revoked"; revokedAt: Date; reason?: number } | { status: "unknown" };

export interface OcspResponder {
  /** A delegated OCSP signing certificate, or the CA certificate itself. */
  certificate: x509.X509Certificate;
  signer: Signer;
  keyAlgorithm: CaKeyAlgorithm;
  /** True for delegated responders, so that clients can verify the signature. */
  includeCertificate: boolean;
}

export interface OcspResponseInput {
  responder: OcspResponder;
  certId: OcspCertId;
  status: CertStatus;
  producedAt: Date;
  thisUpdate: Date;
  nextUpdate: Date;
  /** The request's nonce, echoed (RFC 8954). */
  nonce?: Buffer;
}

/** CRLReason values (RFC 5280 §5.3.1); 7 is unused. */
const REASON_CODES = new Set<number>(Object.values(CRL_REASONS));

/**
 * A successful OCSPResponse carrying a BasicOCSPResponse with one
 * SingleResponse for the request's CertID, signed by the responder key.
 * Times are written to the second (DER GeneralizedTime, no fraction). A
 * revocation reason of unspecified (0) is left out, as RFC 5280 §5.3.1 asks
 * of CRL entries.
 */
export async function buildOcspResponse(input: OcspResponseInput): Promise<Uint8Array> {
  const { responder, certId, status, nonce } = input;
  if (input.nextUpdate.getTime() < input.thisUpdate.getTime()) throw new Error("nextUpdate is before thisUpdate");
  if (nonce && (nonce.length < 1 || nonce.length > MAX_NONCE)) throw new Error(`a nonce is 1 to ${MAX_NONCE} bytes`);
  const cid = readTlv(certId.der, 0, certId.der.length);
  if (cid.tag !== 0x30 || cid.end !== certId.der.length) throw new Error("certId.der is not one CertID SEQUENCE");

  const parts = responderParts(responder);

  const single = seq(
    certId.der,
    certStatusDer(status),
    generalizedTime(input.thisUpdate),
    tlv(0xa0, generalizedTime(input.nextUpdate)),
  );
  const responseData = seq(
    // version v1 is the DEFAULT, so absent; ResponderID byKey [2] EXPLICIT KeyHash (RFC 5019 §2.2.3).
    parts.responderId,
    generalizedTime(input.producedAt),
    seq(single),
    ...(nonce ? [tlv(0xa1, seq(seq(tlv(0x06, Buffer.from(OID_NONCE, "hex")), tlv(0x04, tlv(0x04, nonce)))))] : []),
  );
  // Nothing reaches the responder's key before the gate passes it (src/lint; docs/lint.md).
  await lintOcspResponse({
    tbs: responseData,
    algorithm: responder.keyAlgorithm,
    responder: responder.certificate,
    delegated: responder.includeCertificate,
    certIdDer: certId.der,
    serial: certId.serial,
    status: status.status,
    producedAt: input.producedAt,
    thisUpdate: input.thisUpdate,
    nextUpdate: input.nextUpdate,
    nonce,
  });
  const signature = await signTbs(responder.signer, responder.keyAlgorithm, responseData);
  const basic = seq(
    responseData,
    parts.signatureAlgorithm,
    tlv(0x03, Buffer.concat([Buffer.of(0), signature])),
    ...(responder.includeCertificate ? [parts.certs] : []),
  );
  return seq(
    tlv(0x0a, Buffer.of(0)), // successful
    tlv(0xa0, seq(tlv(0x06, Buffer.from(OID_BASIC, "hex")), tlv(0x04, basic))),
  );
}

/** What every response of one responder shares, encoded once: its ResponderID, signature algorithm and certs field. */
interface ResponderParts {
  responderId: Uint8Array;
  signatureAlgorithm: Uint8Array;
  certs: Uint8Array;
}

const responderPartsCache = new WeakMap<x509.X509Certificate, Map<CaKeyAlgorithm, ResponderParts>>();

function responderParts(responder: OcspResponder): ResponderParts {
  const byAlgorithm = responderPartsCache.get(responder.certificate) ?? new Map<CaKeyAlgorithm, ResponderParts>();
  let parts = byAlgorithm.get(responder.keyAlgorithm);
  if (!parts) {
    const fields = certificateFields(new Uint8Array(responder.certificate.rawData));
    const family = responder.keyAlgorithm.startsWith("ecdsa") ? OID_EC_PUBLIC_KEY : OID_RSA_ENCRYPTION;
    if (fields.keyAlgorithmOid !== family) throw new Error(`the responder certificate's key is not ${responder.keyAlgorithm}`);
    parts = {
      // ResponderID byKey [2] EXPLICIT KeyHash (RFC 5019 §2.2.3).
      responderId: tlv(0xa2, tlv(0x04, digest("sha1", fields.publicKeyBits))),
      signatureAlgorithm: signatureAlgorithmDer(responder.keyAlgorithm),
      certs: tlv(0xa0, seq(new Uint8Array(responder.certificate.rawData))),
    };
    byAlgorithm.set(responder.keyAlgorithm, parts);
    responderPartsCache.set(responder.certificate, byAlgorithm);
  }
  return parts;
}

function certStatusDer(status: CertStatus): Uint8Array {
  switch (status.status) {
    case "good":
      return tlv(0x80, new Uint8Array(0)); // [0] IMPLICIT NULL
    case "unknown":
      return tlv(0x82, new Uint8Array(0)); // [2] IMPLICIT NULL
    case "revoked": {
      const { reason } = status;
      if (reason !== undefined && !REASON_CODES.has(reason)) throw new Error(`${reason} is not a CRLReason`);
      // [1] IMPLICIT RevokedInfo { revocationTime, revocationReason [0] EXPLICIT CRLReason OPTIONAL }
      return tlv(
        0xa1,
        generalizedTime(status.revokedAt),
        ...(reason !== undefined && reason !== 0 ? [tlv(0xa0, tlv(0x0a, Buffer.of(reason)))] : []),
      );
    }
  }
}

const RESPONSE_STATUS = { malformedRequest: 1, internalError: 2, tryLater: 3, sigRequired: 5, unauthorized: 6 } as const;

/** An unsuccessful OCSPResponse: the status alone, unsigned (RFC 6960 §4.2.1). */
export function ocspErrorResponse(status: keyof typeof RESPONSE_STATUS): Uint8Array {
  return seq(tlv(0x0a, Buffer.of(RESPONSE_STATUS[status])));
}

function digest(h: "sha1", data: Uint8Array): Buffer {
  return createHash(h).update(data).digest();
}
