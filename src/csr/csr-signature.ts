import crypto from "node:crypto";
import { Rejection } from "../errors.ts";
import { DerError } from "../asn1/der-error.ts";
import { readChildren, readOid, readTlv, type Tlv } from "../asn1/der-reader.ts";
import { TAG } from "../asn1/tags.ts";
import type { SubjectPublicKey } from "./subject-key.ts";

/** How a CSR's self-signature is checked: which key family, digest and padding. */
export type SignatureAlgorithm =
  | { family: "ecdsa"; hash: Hash }
  | { family: "rsa"; hash: Hash; pss?: { saltLength: number } }
  | { family: "ed25519" };

type Hash = "sha256" | "sha384" | "sha512";

const SIGNATURE_OIDS: Record<string, SignatureAlgorithm> = {
  "1.2.840.10045.4.3.2": { family: "ecdsa", hash: "sha256" },
  "1.2.840.10045.4.3.3": { family: "ecdsa", hash: "sha384" },
  "1.2.840.10045.4.3.4": { family: "ecdsa", hash: "sha512" },
  "1.2.840.113549.1.1.11": { family: "rsa", hash: "sha256" },
  "1.2.840.113549.1.1.12": { family: "rsa", hash: "sha384" },
  "1.2.840.113549.1.1.13": { family: "rsa", hash: "sha512" },
  "1.3.101.112": { family: "ed25519" },
};

const RSASSA_PSS = "1.2.840.113549.1.1.10";
const MGF1 = "1.2.840.113549.1.1.8";
const SHA1 = "1.3.14.3.2.26";
const HASH_OIDS: Record<string, Hash> = {
  "2.16.840.1.101.3.4.2.1": "sha256",
  "2.16.840.1.101.3.4.2.2": "sha384",
  "2.16.840.1.101.3.4.2.3": "sha512",
};

/** Names for the refusal message; SHA-1 ones are what old clients still send. */
const KNOWN_NAMES: Record<string, string> = {
  "1.2.840.113549.1.1.5": "sha1WithRSAEncryption",
  "1.2.840.10045.4.1": "ecdsa-with-SHA1",
  "1.2.840.113549.1.1.4": "md5WithRSAEncryption",
  "1.3.101.113": "Ed448",
};

const FAMILY_NAMES: Record<SignatureAlgorithm["family"], string> = { ecdsa: "ECDSA", rsa: "RSA", ed25519: "Ed25519" };

const SUPPORTED = "sign it with ECDSA or RSA (PKCS#1 v1.5 or PSS) and SHA-256/384/512, or with Ed25519";

/**
 * The CSR's signatureAlgorithm (an AlgorithmIdentifier at `t`). Algorithms
 * the CA does not check are a bad-csr-signature Rejection naming them.
 */
export function readSignatureAlgorithm(buf: Uint8Array, t: Tlv): SignatureAlgorithm {
  let oid: string;
  let params: Tlv | undefined;
  try {
    const [id, p, ...rest] = t.tag === TAG.SEQUENCE ? readChildren(buf, t) : [];
    if (!id || rest.length) throw new DerError("malformed AlgorithmIdentifier");
    oid = readOid(buf, id);
    params = p;
  } catch {
    throw new Rejection("bad-csr", "the CSR's signature algorithm cannot be parsed");
  }
  if (oid === RSASSA_PSS) {
    try {
      return pssAlgorithm(buf, params);
    } catch (err) {
      if (err instanceof Rejection) throw err;
      throw new Rejection("bad-csr", "the CSR's RSASSA-PSS parameters cannot be parsed");
    }
  }
  const alg = SIGNATURE_OIDS[oid];
  if (!alg) throw new Rejection("bad-csr-signature", `the CSR is signed with ${KNOWN_NAMES[oid] ?? oid}, which is not supported; ${SUPPORTED}`);
  // ECDSA and Ed25519 take no parameters and PKCS#1 v1.5 a NULL; absent or NULL is tolerated for all three.
  if (params && params.tag !== TAG.NULL) throw new Rejection("bad-csr", "the CSR's signature algorithm has unexpected parameters");
  return alg;
}

/**
 * RSASSA-PSS-params (RFC 4055): node:crypto takes the MGF1 digest from the
 * signature digest, so the two must be the same; SHA-1 (the default) is refused.
 */
function pssAlgorithm(buf: Uint8Array, params: Tlv | undefined): SignatureAlgorithm {
  if (!params || params.tag !== TAG.SEQUENCE) throw new DerError("RSASSA-PSS without parameters");
  let hash: string | undefined;
  let mgfHash: string | undefined;
  let saltLength = 20;
  let trailerField = 1;
  let lastTag = -1;
  for (const field of readChildren(buf, params)) {
    if (field.tag <= lastTag) throw new DerError("RSASSA-PSS parameters out of order");
    lastTag = field.tag;
    const inner = explicitContent(buf, field);
    switch (field.tag) {
      case 0xa0:
        hash = hashAlgorithm(buf, inner);
        break;
      case 0xa1: {
        const [mgf, mgfParams, ...rest] = inner.tag === TAG.SEQUENCE ? readChildren(buf, inner) : [];
        if (!mgf || !mgfParams || rest.length) throw new DerError("malformed maskGenAlgorithm");
        mgfHash = readOid(buf, mgf) === MGF1 ? hashAlgorithm(buf, mgfParams) : "unsupported";
        break;
      }
      case 0xa2:
        saltLength = smallInteger(buf, inner);
        break;
      case 0xa3:
        trailerField = smallInteger(buf, inner);
        break;
      default:
        throw new DerError("unknown RSASSA-PSS parameter");
    }
  }
  const digest = hash === undefined ? undefined : HASH_OIDS[hash];
  if (!digest || (mgfHash ?? SHA1) !== hash || trailerField !== 1) {
    throw new Rejection("bad-csr-signature", `the CSR is signed with RSASSA-PSS parameters that are not supported (the hash and the MGF1 hash must be the same SHA-256/384/512); ${SUPPORTED}`);
  }
  return { family: "rsa", hash: digest, pss: { saltLength } };
}

/** The content of an EXPLICIT tag: exactly one TLV. */
function explicitContent(buf: Uint8Array, t: Tlv): Tlv {
  const inner = readTlv(buf, t.contentStart, t.end);
  if (inner.end !== t.end) throw new DerError(`trailing bytes in [${t.tag & 0x1f}] at offset ${t.start}`);
  return inner;
}

/** A hash AlgorithmIdentifier's OID (parameters absent or NULL). */
function hashAlgorithm(buf: Uint8Array, t: Tlv): string {
  const [id, params, ...rest] = t.tag === TAG.SEQUENCE ? readChildren(buf, t) : [];
  if (!id || rest.length || (params && params.tag !== TAG.NULL)) throw new DerError("malformed hash AlgorithmIdentifier");
  return readOid(buf, id);
}

/** A non-negative INTEGER that fits in 31 bits, minimally encoded. */
function smallInteger(buf: Uint8Array, t: Tlv): number {
  const len = t.end - t.contentStart;
  if (t.tag !== TAG.INTEGER || len < 1 || len > 4) throw new DerError(`expected a small INTEGER at offset ${t.start}`);
  const first = buf[t.contentStart]!;
  if (first & 0x80 || (first === 0 && len > 1 && buf[t.contentStart + 1]! < 0x80)) throw new DerError(`bad INTEGER at offset ${t.start}`);
  let v = 0;
  for (let p = t.contentStart; p < t.end; p++) v = v * 256 + buf[p]!;
  return v;
}

/**
 * Whether `signature` over `data` verifies with the CSR's own key. The
 * algorithm must belong to the key's family: node:crypto would otherwise
 * happily check an "ECDSA" signature as RSA. The check runs on libuv's
 * thread pool (node:crypto's callback form): about 0.15 ms of OpenSSL per
 * CSR that the event loop, the bound of one process's issuance rate, does
 * not spend (docs/benchmarks.md, profile section).
 */
export function verifySignature(alg: SignatureAlgorithm, subject: SubjectPublicKey, data: Uint8Array, signature: Uint8Array): Promise<boolean> {
  if (alg.family !== subject.key.type) {
    return Promise.reject(new Rejection("bad-csr-signature", `the CSR is signed with ${FAMILY_NAMES[alg.family]}, which does not fit its ${FAMILY_NAMES[subject.key.type]} public key`));
  }
  const [hash, key] = ((): [string | null, crypto.VerifyKeyObjectInput | crypto.VerifyPublicKeyInput | crypto.KeyObject] => {
    switch (alg.family) {
      case "ed25519":
        return [null, subject.keyObject];
      case "ecdsa":
        return [alg.hash, { key: subject.keyObject, dsaEncoding: "der" }];
      case "rsa":
        return alg.pss
          ? [alg.hash, { key: subject.keyObject, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: alg.pss.saltLength }]
          : [alg.hash, { key: subject.keyObject, padding: crypto.constants.RSA_PKCS1_PADDING }];
    }
  })();
  return new Promise((resolve) => {
    try {
      // A signature OpenSSL cannot even decode does not verify either.
      crypto.verify(hash, data, key, signature, (err, ok) => resolve(!err && ok));
    } catch {
      resolve(false);
    }
  });
}
