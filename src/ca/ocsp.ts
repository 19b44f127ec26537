import { createHash, timingSafeEqual } from "node:crypto";
import type * as x509 from "@peculiar/x509";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import { signatureAlgorithmDer, signTbs } from "./signature.ts";
import type { Signer } from "../hsm/key-manager.ts";

/**
 * OCSP (RFC 6960) in the RFC 5019 lightweight profile: one CertID per
 * request, responses signed by a delegated responder or by the CA itself,
 * ResponderID byKey. Nonces follow RFC 8954.
 *
 * Requests are read and responses written as DER by hand: the CertID must be
 * echoed exactly as the client sent it, and the structures are small.
 */

/** id-kp-OCSPSigning: the extended key usage of a delegated responder certificate. */
export const OID_OCSP_SIGNING = "1.3.6.1.5.5.7.3.9";
/** id-pkix-ocsp-nocheck: a delegated responder certificate is not itself checked for revocation (its value is NULL). */
export const OID_OCSP_NOCHECK = "1.3.6.1.5.5.7.48.1.5";

export type HashName = "sha1" | "sha256" | "sha384" | "sha512";
const HASH_NAMES: readonly HashName[] = ["sha1", "sha256", "sha384", "sha512"];

/** Content octets of the hash algorithm OIDs, and their digest sizes. */
const HASHES: Record<HashName, { oid: string; size: number }> = {
  sha1: { oid: "2b0e03021a", size: 20 }, // 1.3.14.3.2.26
  sha256: { oid: "608648016503040201", size: 32 }, // 2.16.840.1.101.3.4.2.1
  sha384: { oid: "608648016503040202", size: 48 },
  sha512: { oid: "608648016503040203", size: 64 },
};
const OID_NONCE = "2b0601050507300102"; // 1.3.6.1.5.5.7.48.1.2, id-pkix-ocsp-nonce
const OID_BASIC = "2b0601050507300101"; // 1.3.6.1.5.5.7.48.1.1, id-pkix-ocsp-basic
const OID_EC_PUBLIC_KEY = "2a8648ce3d0201"; // 1.2.840.10045.2.1
const OID_RSA_ENCRYPTION = "2a864886f70d010101"; // 1.2.840.113549.1.1.1

/** RFC 8954 §2.1: Nonce ::= OCTET STRING(SIZE(1..32)). */
const MAX_NONCE = 32;

export interface OcspCertId {
  hashAlgorithm: HashName;
  issuerNameHash: Buffer;
  issuerKeyHash: Buffer;
  /** Lowercase hex without the leading 00 sign byte, as the store keeps serials. */
  serial: string;
  /** The CertID DER as received, echoed in the response. */
  der: Buffer;
}

export interface ParsedOcspRequest {
  certIds: OcspCertId[];
  /** The nonce's octets (the content of the Nonce OCTET STRING), 1 to 32 bytes. */
  nonce?: Buffer;
}

/** The request is not one this responder answers: the HTTP layer replies malformedRequest. */
export class OcspRequestError extends Error {}

/** Something in DER we read ourselves is not well-formed DER. */
class DerError extends Error {}

/**
 * Reads an OCSPRequest. Refuses anything but DER, requests without exactly
 * one CertID (RFC 5019 §2.1.1), unknown hash algorithms, hashes of the wrong
 * size, negative serials, malformed nonces (RFC 8954 §2.1), repeated request
 * extensions and unknown critical ones. A signature on the request is
 * allowed and ignored.
 */
export function parseOcspRequest(der: Uint8Array): ParsedOcspRequest {
  const buf = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  try {
    return readRequest(buf);
  } catch (err) {
    if (err instanceof OcspRequestError) throw err;
    if (err instanceof DerError) throw new OcspRequestError(`not a DER OCSPRequest: ${err.message}`);
    throw err;
  }
}

function readRequest(buf: Buffer): ParsedOcspRequest {
  if (buf.length === 0) throw new OcspRequestError("empty request");
  const top = readTlv(buf, 0, buf.length);
  if (top.end !== buf.length) throw new DerError("data after the OCSPRequest");
  expectTag(top, 0x30, "OCSPRequest");
  const [tbs, sig, ...rest] = children(buf, top);
  if (!tbs || rest.length > 0) throw new DerError("OCSPRequest is SEQUENCE { tbsRequest, [0] optionalSignature }");
  expectTag(tbs, 0x30, "tbsRequest");
  // optionalSignature: accepted, not verified (RFC 5019 §2.1.2 does not require signed requests).
  if (sig) expectTag(sig, 0xa0, "optionalSignature");

  const fields = children(buf, tbs);
  let i = 0;
  if (fields[i]?.tag === 0xa0) {
    const [version, ...more] = children(buf, fields[i]!);
    if (!version || more.length > 0) throw new DerError("[0] version holds one INTEGER");
    expectTag(version, 0x02, "version");
    if (content(buf, version).toString("hex") !== "00") throw new OcspRequestError("only OCSP request version v1 is known");
    i++;
  }
  if (fields[i]?.tag === 0xa1) i++; // requestorName: not used
  const list = fields[i++];
  if (!list) throw new DerError("tbsRequest has no requestList");
  expectTag(list, 0x30, "requestList");
  const extensions = fields[i]?.tag === 0xa2 ? fields[i++] : undefined;
  if (i !== fields.length) throw new DerError("unexpected field in tbsRequest");

  const requests = children(buf, list);
  if (requests.length === 0) throw new OcspRequestError("the request names no certificate");
  if (requests.length > 1) throw new OcspRequestError(`the request names ${requests.length} certificates; one per request (RFC 5019 §2.1.1)`);
  const certIds = requests.map((r) => readSingleRequest(buf, r));

  const nonce = extensions ? readRequestExtensions(buf, extensions) : undefined;
  return nonce ? { certIds, nonce } : { certIds };
}

/** Request ::= SEQUENCE { reqCert CertID, singleRequestExtensions [0] EXPLICIT Extensions OPTIONAL } */
function readSingleRequest(buf: Buffer, request: Tlv): OcspCertId {
  expectTag(request, 0x30, "Request");
  const [certId, exts, ...rest] = children(buf, request);
  if (!certId || rest.length > 0) throw new DerError("Request is SEQUENCE { reqCert, [0] singleRequestExtensions }");
  if (exts) {
    expectTag(exts, 0xa0, "singleRequestExtensions");
    // None is defined that we act on; unknown critical ones are refused like in requestExtensions.
    for (const ext of extensionList(buf, exts)) {
      if (ext.critical) throw new OcspRequestError(`unsupported critical request extension ${ext.oid}`);
    }
  }
  return readCertId(buf, certId);
}

/**
 * CertID ::= SEQUENCE { hashAlgorithm AlgorithmIdentifier, issuerNameHash
 * OCTET STRING, issuerKeyHash OCTET STRING, serialNumber INTEGER }
 */
function readCertId(buf: Buffer, certId: Tlv): OcspCertId {
  expectTag(certId, 0x30, "CertID");
  const [alg, nameHash, keyHash, serial, ...rest] = children(buf, certId);
  if (!serial || rest.length > 0) throw new DerError("CertID has four fields");
  expectTag(alg, 0x30, "hashAlgorithm");
  expectTag(nameHash!, 0x04, "issuerNameHash");
  expectTag(keyHash!, 0x04, "issuerKeyHash");
  expectTag(serial, 0x02, "serialNumber");

  const [algOid, params, ...more] = children(buf, alg!);
  if (!algOid || more.length > 0) throw new DerError("AlgorithmIdentifier is SEQUENCE { algorithm, parameters }");
  expectTag(algOid, 0x06, "hash algorithm");
  // Parameters are absent or NULL for the SHA family (RFC 5754 §2).
  if (params && (params.tag !== 0x05 || params.end !== params.contentStart)) throw new OcspRequestError("hash algorithm parameters must be absent or NULL");
  const oidHex = content(buf, algOid).toString("hex");
  const hashAlgorithm = HASH_NAMES.find((h) => HASHES[h].oid === oidHex);
  if (!hashAlgorithm) throw new OcspRequestError(`unsupported CertID hash algorithm (OID content ${oidHex})`);
  const size = HASHES[hashAlgorithm].size;
  const issuerNameHash = Buffer.from(content(buf, nameHash!));
  const issuerKeyHash = Buffer.from(content(buf, keyHash!));
  if (issuerNameHash.length !== size || issuerKeyHash.length !== size) {
    throw new OcspRequestError(`CertID hashes must be ${size} bytes for ${hashAlgorithm}`);
  }

  const serialBytes = integerContent(buf, serial);
  if (serialBytes[0]! & 0x80) throw new OcspRequestError("negative certificate serial number");
  const unsigned = serialBytes.length > 1 && serialBytes[0] === 0 ? serialBytes.subarray(1) : serialBytes;
  return {
    hashAlgorithm,
    issuerNameHash,
    issuerKeyHash,
    serial: unsigned.toString("hex"),
    der: Buffer.from(buf.subarray(certId.start, certId.end)),
  };
}

/** requestExtensions [2] EXPLICIT Extensions: the nonce, if any. */
function readRequestExtensions(buf: Buffer, exts: Tlv): Buffer | undefined {
  let nonce: Buffer | undefined;
  for (const ext of extensionList(buf, exts)) {
    if (ext.oid !== OID_NONCE) {
      // RFC 6960 §4.4: unrecognised extensions are ignored unless critical.
      if (ext.critical) throw new OcspRequestError(`unsupported critical request extension ${ext.oid}`);
      continue;
    }
    // RFC 8954 §2.1: the extnValue holds Nonce ::= OCTET STRING(SIZE(1..32)).
    const value = ext.value;
    let inner: Tlv;
    try {
      inner = readTlv(value, 0, value.length);
    } catch {
      throw new OcspRequestError("the nonce is not an OCTET STRING");
    }
    if (inner.tag !== 0x04 || inner.end !== value.length) throw new OcspRequestError("the nonce is not an OCTET STRING");
    const octets = content(value, inner);
    if (octets.length < 1 || octets.length > MAX_NONCE) {
      throw new OcspRequestError(`the nonce is ${octets.length} bytes; RFC 8954 allows 1 to ${MAX_NONCE}`);
    }
    nonce = Buffer.from(octets);
  }
  return nonce;
}

interface ParsedExtension {
  /** Content octets of the OID, hex. */
  oid: string;
  critical: boolean;
  /** extnValue's content. */
  value: Buffer;
}

/** [n] EXPLICIT SEQUENCE OF Extension; a repeated extension is refused (RFC 5280 §4.2). */
function extensionList(buf: Buffer, wrapper: Tlv): ParsedExtension[] {
  const [seq, ...rest] = children(buf, wrapper);
  if (!seq || rest.length > 0) throw new DerError("extensions hold one SEQUENCE");
  expectTag(seq, 0x30, "Extensions");
  const out: ParsedExtension[] = [];
  for (const ext of children(buf, seq)) {
    expectTag(ext, 0x30, "Extension");
    const parts = children(buf, ext);
    const oid = parts[0];
    const critical = parts.length === 3 ? parts[1] : undefined;
    const value = parts[parts.length - 1];
    if (!oid || !value || parts.length < 2 || parts.length > 3) throw new DerError("Extension is SEQUENCE { extnID, critical, extnValue }");
    expectTag(oid, 0x06, "extnID");
    expectTag(value, 0x04, "extnValue");
    let isCritical = false;
    if (critical) {
      expectTag(critical, 0x01, "critical");
      const b = content(buf, critical);
      if (b.length !== 1 || (b[0] !== 0x00 && b[0] !== 0xff)) throw new DerError("BOOLEAN is 00 or ff");
      isCritical = b[0] === 0xff;
    }
    const oidHex = content(buf, oid).toString("hex");
    if (out.some((e) => e.oid === oidHex)) throw new OcspRequestError(`request extension ${oidHex} appears twice`);
    out.push({ oid: oidHex, critical: isCritical, value: Buffer.from(content(buf, value)) });
  }
  return out;
}

/* ------------------------------------------------------------------------ */
/* Issuer hashes                                                             */

export interface IssuerKeyHashes {
  sha1: { nameHash: Buffer; keyHash: Buffer };
  sha256: { nameHash: Buffer; keyHash: Buffer };
  sha384: { nameHash: Buffer; keyHash: Buffer };
  sha512: { nameHash: Buffer; keyHash: Buffer };
}

/**
 * The CertID hashes of a CA, in every algorithm we accept: the hash of its
 * subject DER as it appears in its certificate (which its certificates carry
 * as their issuer), and of the contents of its subjectPublicKey BIT STRING
 * (RFC 6960 §4.1.1: without tag, length, and the unused-bits octet).
 */
export function issuerHashes(issuer: x509.X509Certificate): IssuerKeyHashes {
  const { subject, publicKeyBits } = certificateParts(new Uint8Array(issuer.rawData));
  const both = (h: HashName) => ({ nameHash: digest(h, subject), keyHash: digest(h, publicKeyBits) });
  return { sha1: both("sha1"), sha256: both("sha256"), sha384: both("sha384"), sha512: both("sha512") };
}

/** Whether the CertID names this issuer; compares without short-circuit in constant time. */
export function matchesIssuer(certId: OcspCertId, hashes: IssuerKeyHashes): boolean {
  const expected = hashes[certId.hashAlgorithm];
  if (!expected) return false;
  const name = sameBytes(certId.issuerNameHash, expected.nameHash);
  const key = sameBytes(certId.issuerKeyHash, expected.keyHash);
  return name && key;
}

/**
 * A CertID built by the responder, for responses signed before any request
 * arrives (RFC 5019 pre-signed responses): hashAlgorithm with NULL
 * parameters, as OpenSSL sends it.
 */
export function buildCertId(hashes: IssuerKeyHashes, hashAlgorithm: HashName, serial: string): OcspCertId {
  if (!/^[0-9a-f]+$/.test(serial) || serial.length % 2 !== 0) throw new Error(`serial "${serial}" is not lowercase hex of whole bytes`);
  let bytes = Buffer.from(serial, "hex");
  while (bytes.length > 1 && bytes[0] === 0) bytes = bytes.subarray(1);
  const { nameHash, keyHash } = hashes[hashAlgorithm];
  const der = seq(
    seq(tlv(0x06, Buffer.from(HASHES[hashAlgorithm].oid, "hex")), NULL),
    tlv(0x04, nameHash),
    tlv(0x04, keyHash),
    tlv(0x02, bytes[0]! & 0x80 ? Buffer.concat([Buffer.of(0), bytes]) : bytes),
  );
  return { hashAlgorithm, issuerNameHash: nameHash, issuerKeyHash: keyHash, serial: bytes.toString("hex"), der: Buffer.from(der) };
}

function sameBytes(a: Buffer, b: Buffer): boolean {
  // Lengths are public (they follow from the algorithm); the contents are compared in constant time.
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

function digest(h: HashName, data: Uint8Array): Buffer {
  return createHash(h).update(data).digest();
}

/** From a certificate's DER: the subject Name DER, the public key bits and the key's algorithm OID. */
function certificateParts(der: Uint8Array): { subject: Buffer; publicKeyBits: Buffer; keyAlgorithmOid: string } {
  const buf = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  const cert = readTlv(buf, 0, buf.length);
  expectTag(cert, 0x30, "Certificate");
  const [tbs] = children(buf, cert);
  expectTag(tbs!, 0x30, "tbsCertificate");
  const fields = children(buf, tbs!);
  // [0] version, serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ...
  const at = fields[0]?.tag === 0xa0 ? 1 : 0;
  const subject = fields[at + 4];
  const spki = fields[at + 5];
  if (!subject || !spki) throw new DerError("tbsCertificate too short");
  expectTag(subject, 0x30, "subject");
  expectTag(spki, 0x30, "subjectPublicKeyInfo");
  const [alg, bits] = children(buf, spki);
  expectTag(alg!, 0x30, "algorithm");
  expectTag(bits!, 0x03, "subjectPublicKey");
  const [algOid] = children(buf, alg!);
  expectTag(algOid!, 0x06, "algorithm");
  const bitString = content(buf, bits!);
  if (bitString.length < 1 || bitString[0] !== 0) throw new DerError("subjectPublicKey has unused bits");
  return {
    subject: Buffer.from(buf.subarray(subject.start, subject.end)),
    publicKeyBits: Buffer.from(bitString.subarray(1)),
    keyAlgorithmOid: content(buf, algOid!).toString("hex"),
  };
}

/* ------------------------------------------------------------------------ */
/* Responses                                                                 */

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
const CRL_REASONS = new Set([0, 1, 2, 3, 4, 5, 6, 8, 9, 10]);

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

  const parts = certificateParts(new Uint8Array(responder.certificate.rawData));
  const family = responder.keyAlgorithm.startsWith("ecdsa") ? OID_EC_PUBLIC_KEY : OID_RSA_ENCRYPTION;
  if (parts.keyAlgorithmOid !== family) throw new Error(`the responder certificate's key is not ${responder.keyAlgorithm}`);

  const single = seq(
    certId.der,
    certStatusDer(status),
    generalizedTime(input.thisUpdate),
    tlv(0xa0, generalizedTime(input.nextUpdate)),
  );
  const responseData = seq(
    // version v1 is the DEFAULT, so absent; ResponderID byKey [2] EXPLICIT KeyHash (RFC 5019 §2.2.3).
    tlv(0xa2, tlv(0x04, digest("sha1", parts.publicKeyBits))),
    generalizedTime(input.producedAt),
    seq(single),
    ...(nonce ? [tlv(0xa1, seq(seq(tlv(0x06, Buffer.from(OID_NONCE, "hex")), tlv(0x04, tlv(0x04, nonce)))))] : []),
  );
  const signature = await signTbs(responder.signer, responder.keyAlgorithm, responseData);
  const basic = seq(
    responseData,
    signatureAlgorithmDer(responder.keyAlgorithm),
    tlv(0x03, Buffer.concat([Buffer.of(0), signature])),
    ...(responder.includeCertificate ? [tlv(0xa0, seq(new Uint8Array(responder.certificate.rawData)))] : []),
  );
  return seq(
    tlv(0x0a, Buffer.of(0)), // successful
    tlv(0xa0, seq(tlv(0x06, Buffer.from(OID_BASIC, "hex")), tlv(0x04, basic))),
  );
}

function certStatusDer(status: CertStatus): Uint8Array {
  switch (status.status) {
    case "good":
      return tlv(0x80, new Uint8Array(0)); // [0] IMPLICIT NULL
    case "unknown":
      return tlv(0x82, new Uint8Array(0)); // [2] IMPLICIT NULL
    case "revoked": {
      const { reason } = status;
      if (reason !== undefined && !CRL_REASONS.has(reason)) throw new Error(`${reason} is not a CRLReason`);
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

/* ------------------------------------------------------------------------ */
/* DER                                                                       */

interface Tlv {
  tag: number;
  start: number;
  contentStart: number;
  end: number;
}

/** One DER TLV at pos, within limit: low tag numbers, definite minimal lengths. */
function readTlv(buf: Uint8Array, pos: number, limit: number): Tlv {
  if (pos + 2 > limit) throw new DerError("truncated");
  const tag = buf[pos]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError("high tag numbers are not used here");
  const first = buf[pos + 1]!;
  let length: number;
  let contentStart: number;
  if (first < 0x80) {
    length = first;
    contentStart = pos + 2;
  } else {
    const n = first & 0x7f;
    if (n === 0) throw new DerError("indefinite length");
    if (n > 4) throw new DerError("length too large");
    if (pos + 2 + n > limit) throw new DerError("truncated");
    if (buf[pos + 2] === 0) throw new DerError("length not minimally encoded");
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + buf[pos + 2 + i]!;
    if (length < 0x80) throw new DerError("length not minimally encoded");
    contentStart = pos + 2 + n;
  }
  const end = contentStart + length;
  if (end > limit) throw new DerError("truncated");
  return { tag, start: pos, contentStart, end };
}

/** The TLVs that exactly fill a constructed TLV's content. */
function children(buf: Uint8Array, parent: Tlv): Tlv[] {
  if (!(parent.tag & 0x20)) throw new DerError("expected a constructed type");
  const out: Tlv[] = [];
  for (let pos = parent.contentStart; pos < parent.end; ) {
    const t = readTlv(buf, pos, parent.end);
    out.push(t);
    pos = t.end;
  }
  return out;
}

function content(buf: Buffer, t: Tlv): Buffer {
  return buf.subarray(t.contentStart, t.end);
}

function expectTag(t: Tlv | undefined, tag: number, what: string): asserts t is Tlv {
  if (!t) throw new DerError(`${what} is missing`);
  if (t.tag !== tag) throw new DerError(`${what}: expected tag 0x${tag.toString(16)}, found 0x${t.tag.toString(16)}`);
}

/** An INTEGER's content, refusing the empty and non-minimal encodings DER forbids. */
function integerContent(buf: Buffer, t: Tlv): Buffer {
  const b = content(buf, t);
  if (b.length === 0) throw new DerError("empty INTEGER");
  if (b.length > 1 && ((b[0] === 0x00 && !(b[1]! & 0x80)) || (b[0] === 0xff && b[1]! & 0x80))) {
    throw new DerError("INTEGER not minimally encoded");
  }
  return b;
}

const NULL = Uint8Array.of(0x05, 0x00);

function tlv(tag: number, ...parts: Uint8Array[]): Uint8Array {
  const body = Buffer.concat(parts);
  const n = body.length;
  let header: number[];
  if (n < 0x80) header = [tag, n];
  else {
    const len: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) len.unshift(v & 0xff);
    header = [tag, 0x80 | len.length, ...len];
  }
  return new Uint8Array(Buffer.concat([Uint8Array.from(header), body]));
}

function seq(...parts: Uint8Array[]): Uint8Array {
  return tlv(0x30, ...parts);
}

/** GeneralizedTime YYYYMMDDHHMMSSZ: UTC, whole seconds (RFC 5280 §4.1.2.5.2). */
function generalizedTime(d: Date): Uint8Array {
  if (Number.isNaN(d.getTime())) throw new Error("invalid date");
  const year = d.getUTCFullYear();
  if (year < 0 || year > 9999) throw new Error(`year ${year} does not fit GeneralizedTime`);
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  const s = `${p(year, 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  return tlv(0x18, Buffer.from(s, "ascii"));
}
