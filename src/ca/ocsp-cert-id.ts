import { createHash, timingSafeEqual } from "node:crypto";
import type * as x509 from "@peculiar/x509";
import { NULL, sequence as seq, tlv } from "../asn1/der-writer.ts";
import { certificateFields } from "./certificate-fields.ts";

/**
 * The OCSP CertID (RFC 6960 §4.1.1): which issuer (hashes of its name and
 * key) and which serial a request or a response is about.
 */

export type HashName = "sha1" | "sha256" | "sha384" | "sha512";
export const HASH_NAMES: readonly HashName[] = ["sha1", "sha256", "sha384", "sha512"];

/** Content octets of the hash algorithm OIDs, and their digest sizes. */
export const HASHES: Record<HashName, { oid: string; size: number }> = {
  sha1: { oid: "2b0e03021a", size: 20 }, // 1.3.14.3.2.26
  sha256: { oid: "608648016503040201", size: 32 }, // 2.16.840.1.101.3.4.2.1
  sha384: { oid: "608648016503040202", size: 48 },
  sha512: { oid: "608648016503040203", size: 64 },
};

export interface OcspCertId {
  hashAlgorithm: HashName;
  issuerNameHash: Buffer;
  issuerKeyHash: Buffer;
  /** Lowercase hex without the leading 00 sign byte, as the store keeps serials. */
  serial: string;
  /** The CertID DER as received, echoed in the response. */
  der: Buffer;
}

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
  const { subject, publicKeyBits } = certificateFields(new Uint8Array(issuer.rawData));
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
