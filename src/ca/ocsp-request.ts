import { DerError } from "../asn1/der-error.ts";
import { contentOf, expectTag, integerContent, readChildren, readTlv, type Tlv } from "../asn1/der-reader.ts";
import { HASH_NAMES, HASHES, type OcspCertId } from "./ocsp-cert-id.ts";

/**
 * OCSP requests (RFC 6960 §4.1) in the RFC 5019 lightweight profile: one
 * CertID per request; nonces follow RFC 8954.
 *
 * Read by hand with the shared DER reader, not with @peculiar/asn1-ocsp,
 * although that is a dependency: every OCSP answer starts here, and the
 * responder serves about 6,000 answers a second from its cache
 * (docs/benchmarks.md, "OCSP from the pre-signed cache"), some 165 µs each.
 * AsnConvert.parse(der, OCSPRequest) took about 180 µs per openssl request
 * on the same machine, this reader about 2 µs: the schema would halve the
 * responder's rate. The schema also reads BER (an indefinite length passes)
 * and asn1-ocsp 2.6 has singleRequestExtensions without their [0] tag,
 * both of which this responder must refuse; the CertID is echoed byte for
 * byte as received, which a schema object does not keep.
 */

/** 1.3.6.1.5.5.7.48.1.2, id-pkix-ocsp-nonce: the OID's content octets, hex. */
export const OID_NONCE = "2b0601050507300102";

/** RFC 8954 §2.1: Nonce ::= OCTET STRING(SIZE(1..32)). */
export const MAX_NONCE = 32;

export interface ParsedOcspRequest {
  certIds: OcspCertId[];
  /** The nonce's octets (the content of the Nonce OCTET STRING), 1 to 32 bytes. */
  nonce?: Buffer;
}

/** The request is not one this responder answers: the HTTP layer replies malformedRequest. */
export class OcspRequestError extends Error {}

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
  const [tbs, sig, ...rest] = readChildren(buf, top);
  if (!tbs || rest.length > 0) throw new DerError("OCSPRequest is SEQUENCE { tbsRequest, [0] optionalSignature }");
  expectTag(tbs, 0x30, "tbsRequest");
  // optionalSignature: accepted, not verified (RFC 5019 §2.1.2 does not require signed requests).
  if (sig) expectTag(sig, 0xa0, "optionalSignature");

  const fields = readChildren(buf, tbs);
  let i = 0;
  if (fields[i]?.tag === 0xa0) {
    const [version, ...more] = readChildren(buf, fields[i]!);
    if (!version || more.length > 0) throw new DerError("[0] version holds one INTEGER");
    expectTag(version, 0x02, "version");
    if (contentOf(buf, version).toString("hex") !== "00") throw new OcspRequestError("only OCSP request version v1 is known");
    i++;
  }
  if (fields[i]?.tag === 0xa1) i++; // requestorName: not used
  const list = fields[i++];
  if (!list) throw new DerError("tbsRequest has no requestList");
  expectTag(list, 0x30, "requestList");
  const extensions = fields[i]?.tag === 0xa2 ? fields[i++] : undefined;
  if (i !== fields.length) throw new DerError("unexpected field in tbsRequest");

  const requests = readChildren(buf, list);
  if (requests.length === 0) throw new OcspRequestError("the request names no certificate");
  if (requests.length > 1) throw new OcspRequestError(`the request names ${requests.length} certificates; one per request (RFC 5019 §2.1.1)`);
  const certIds = requests.map((r) => readSingleRequest(buf, r));

  const nonce = extensions ? readRequestExtensions(buf, extensions) : undefined;
  return nonce ? { certIds, nonce } : { certIds };
}

/** Request ::= SEQUENCE { reqCert CertID, singleRequestExtensions [0] EXPLICIT Extensions OPTIONAL } */
function readSingleRequest(buf: Buffer, request: Tlv): OcspCertId {
  expectTag(request, 0x30, "Request");
  const [certId, exts, ...rest] = readChildren(buf, request);
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
  const [alg, nameHash, keyHash, serial, ...rest] = readChildren(buf, certId);
  if (!serial || rest.length > 0) throw new DerError("CertID has four fields");
  expectTag(alg, 0x30, "hashAlgorithm");
  expectTag(nameHash!, 0x04, "issuerNameHash");
  expectTag(keyHash!, 0x04, "issuerKeyHash");
  expectTag(serial, 0x02, "serialNumber");

  const [algOid, params, ...more] = readChildren(buf, alg!);
  if (!algOid || more.length > 0) throw new DerError("AlgorithmIdentifier is SEQUENCE { algorithm, parameters }");
  expectTag(algOid, 0x06, "hash algorithm");
  // Parameters are absent or NULL for the SHA family (RFC 5754 §2).
  if (params && (params.tag !== 0x05 || params.end !== params.contentStart)) throw new OcspRequestError("hash algorithm parameters must be absent or NULL");
  const oidHex = contentOf(buf, algOid).toString("hex");
  const hashAlgorithm = HASH_NAMES.find((h) => HASHES[h].oid === oidHex);
  if (!hashAlgorithm) throw new OcspRequestError(`unsupported CertID hash algorithm (OID content ${oidHex})`);
  const size = HASHES[hashAlgorithm].size;
  const issuerNameHash = Buffer.from(contentOf(buf, nameHash!));
  const issuerKeyHash = Buffer.from(contentOf(buf, keyHash!));
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
    const octets = contentOf(value, inner);
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
  const [seq, ...rest] = readChildren(buf, wrapper);
  if (!seq || rest.length > 0) throw new DerError("extensions hold one SEQUENCE");
  expectTag(seq, 0x30, "Extensions");
  const out: ParsedExtension[] = [];
  for (const ext of readChildren(buf, seq)) {
    expectTag(ext, 0x30, "Extension");
    const parts = readChildren(buf, ext);
    const oid = parts[0];
    const critical = parts.length === 3 ? parts[1] : undefined;
    const value = parts[parts.length - 1];
    if (!oid || !value || parts.length < 2 || parts.length > 3) throw new DerError("Extension is SEQUENCE { extnID, critical, extnValue }");
    expectTag(oid, 0x06, "extnID");
    expectTag(value, 0x04, "extnValue");
    let isCritical = false;
    if (critical) {
      expectTag(critical, 0x01, "critical");
      const b = contentOf(buf, critical);
      if (b.length !== 1 || (b[0] !== 0x00 && b[0] !== 0xff)) throw new DerError("BOOLEAN is 00 or ff");
      isCritical = b[0] === 0xff;
    }
    const oidHex = contentOf(buf, oid).toString("hex");
    if (out.some((e) => e.oid === oidHex)) throw new OcspRequestError(`request extension ${oidHex} appears twice`);
    out.push({ oid: oidHex, critical: isCritical, value: Buffer.from(contentOf(buf, value)) });
  }
  return out;
}
