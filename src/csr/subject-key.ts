import crypto from "node:crypto";
import { Rejection } from "../errors.ts";
import { DerError } from "../asn1/der-error.ts";
import { readChildren, readOid, readTlv, type Tlv } from "../asn1/der-reader.ts";
import { TAG } from "../asn1/tags.ts";

export type SubjectKey =
  | { type: "ecdsa"; curve: "P-256" | "P-384" }
  | { type: "rsa"; bits: number }
  | { type: "ed25519" };

/** A CSR's public key: what kind it is, and loaded for crypto.verify. */
export interface SubjectPublicKey {
  key: SubjectKey;
  keyObject: crypto.KeyObject;
  /** RSA only: the public exponent e, which policy judges (kept out of `key`, which says what kind of key it is). */
  rsaPublicExponent?: bigint;
}

const OID = {
  ecPublicKey: "1.2.840.10045.2.1",
  rsaEncryption: "1.2.840.113549.1.1.1",
  ed25519: "1.3.101.112",
  p256: "1.2.840.10045.3.1.7",
  p384: "1.3.132.0.34",
} as const;

const CURVE_NAMES: Record<string, string> = {
  "1.3.132.0.35": "P-521",
  "1.3.132.0.10": "secp256k1",
  "1.3.36.3.3.2.8.1.1.7": "brainpoolP256r1",
};

/** RSA below this size is refused whatever the profile says. */
const MIN_RSA_BITS = 2048;
const MAX_RSA_BITS = 8192;

const UNPARSEABLE = "the CSR's public key cannot be parsed";

/**
 * Reads a SubjectPublicKeyInfo (DER), refuses kinds and sizes the CA never
 * certifies, and loads the key for signature checks. Every refusal is a
 * bad-public-key Rejection.
 */
export function readSubjectPublicKey(spki: Uint8Array): SubjectPublicKey {
  let algorithm: string;
  let parameters: Tlv | undefined;
  let publicKey: Uint8Array;
  try {
    const outer = readTlv(spki, 0);
    const [alg, bits, ...rest] = outer.tag === TAG.SEQUENCE && outer.end === spki.length ? readChildren(spki, outer) : [];
    if (!alg || !bits || rest.length || alg.tag !== TAG.SEQUENCE || bits.tag !== TAG.BIT_STRING) throw new DerError("not a SubjectPublicKeyInfo");
    const [oid, params, ...more] = readChildren(spki, alg);
    if (!oid || more.length) throw new DerError("malformed AlgorithmIdentifier");
    algorithm = readOid(spki, oid);
    parameters = params;
    // Keys are whole bytes: a BIT STRING with unused bits is not a key.
    if (bits.end === bits.contentStart || spki[bits.contentStart] !== 0) throw new DerError("public key BIT STRING with unused bits");
    publicKey = spki.subarray(bits.contentStart + 1, bits.end);
  } catch {
    throw new Rejection("bad-public-key", UNPARSEABLE);
  }
  switch (algorithm) {
    case OID.ecPublicKey:
      return ecKey(spki, publicKey, parameters);
    case OID.rsaEncryption:
      return rsaKey(spki, publicKey);
    case OID.ed25519:
      return ed25519Key(spki, publicKey, parameters);
    default:
      throw new Rejection("bad-public-key", `public key algorithm ${algorithm} is not supported; use ECDSA P-256/P-384, RSA or Ed25519`);
  }
}

export function describeKey(key: SubjectKey): string {
  switch (key.type) {
    case "ecdsa":
      return `ECDSA ${key.curve}`;
    case "rsa":
      return `RSA ${key.bits}`;
    case "ed25519":
      return "Ed25519";
  }
}

function ecKey(spki: Uint8Array, point: Uint8Array, parameters: Tlv | undefined): SubjectPublicKey {
  // ECParameters is a CHOICE; only namedCurve names a curve we might accept.
  let curve = "";
  try {
    if (parameters?.tag === TAG.OID) curve = readOid(spki, parameters);
  } catch {
    curve = "";
  }
  let key: SubjectKey;
  if (curve === OID.p256) key = { type: "ecdsa", curve: "P-256" };
  else if (curve === OID.p384) key = { type: "ecdsa", curve: "P-384" };
  else throw new Rejection("bad-public-key", `elliptic curve ${CURVE_NAMES[curve] ?? (curve || "(none)")} is not supported; use P-256 or P-384`);
  return { key, keyObject: load(spki, () => ecKeyObject(key.curve, spki, point)) };
}

/**
 * An uncompressed point goes in as a JWK, which skips OpenSSL 3's SPKI
 * decoder (a fifth faster per new key); a compressed one as the SPKI.
 * Either way OpenSSL checks that the point is on the curve.
 */
function ecKeyObject(curve: "P-256" | "P-384", spki: Uint8Array, point: Uint8Array): crypto.KeyObject {
  const size = curve === "P-256" ? 32 : 48;
  if (point.length === 1 + 2 * size && point[0] === 0x04) {
    const x = base64url(point.subarray(1, 1 + size));
    const y = base64url(point.subarray(1 + size));
    return crypto.createPublicKey({ key: { kty: "EC", crv: curve, x, y }, format: "jwk" });
  }
  return crypto.createPublicKey({ key: Buffer.from(spki.buffer, spki.byteOffset, spki.length), format: "der", type: "spki" });
}

function rsaKey(spki: Uint8Array, publicKey: Uint8Array): SubjectPublicKey {
  let n: Uint8Array;
  let e: Uint8Array;
  try {
    const seq = readTlv(publicKey, 0);
    const [modulus, exponent, ...rest] = seq.tag === TAG.SEQUENCE && seq.end === publicKey.length ? readChildren(publicKey, seq) : [];
    if (!modulus || !exponent || rest.length) throw new DerError("not an RSAPublicKey");
    n = unsignedInteger(publicKey, modulus);
    e = unsignedInteger(publicKey, exponent);
  } catch {
    throw new Rejection("bad-public-key", "the CSR's RSA public key cannot be parsed");
  }
  const bits = n.length === 0 ? 0 : n.length * 8 - Math.clz32(n[0]!) + 24;
  if (bits < MIN_RSA_BITS) throw new Rejection("bad-public-key", `RSA ${bits}-bit keys are too weak; use at least ${MIN_RSA_BITS} bits`);
  if (bits > MAX_RSA_BITS) throw new Rejection("bad-public-key", `RSA ${bits}-bit keys are not supported; use at most ${MAX_RSA_BITS} bits`);
  // A JWK skips OpenSSL 3's SPKI decoder, which costs more than the RSA verification itself.
  const rsaPublicExponent = e.length === 0 ? 0n : BigInt(`0x${Buffer.from(e.buffer, e.byteOffset, e.length).toString("hex")}`);
  return { key: { type: "rsa", bits }, rsaPublicExponent, keyObject: load(spki, () => crypto.createPublicKey({ key: { kty: "RSA", n: base64url(n), e: base64url(e) }, format: "jwk" })) };
}

function ed25519Key(spki: Uint8Array, publicKey: Uint8Array, parameters: Tlv | undefined): SubjectPublicKey {
  // RFC 8410: no parameters, 32 bytes of key.
  if (parameters || publicKey.length !== 32) throw new Rejection("bad-public-key", UNPARSEABLE);
  return { key: { type: "ed25519" }, keyObject: load(spki, () => crypto.createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: base64url(publicKey) }, format: "jwk" })) };
}

/**
 * Keys loaded lately, by their exact SubjectPublicKeyInfo: OpenSSL 3 takes
 * longer to load a key than to verify a signature with it, and the same key
 * comes back at once (an ACME finalize parses its CSR twice, approvals
 * parse it again). Public keys only, bounded, least recently used out first.
 */
const recentKeys = new Map<string, crypto.KeyObject>();
const RECENT_KEYS = 256;

function load(spki: Uint8Array, create: () => crypto.KeyObject): crypto.KeyObject {
  const id = Buffer.from(spki.buffer, spki.byteOffset, spki.length).toString("latin1");
  let keyObject = recentKeys.get(id);
  if (keyObject) {
    recentKeys.delete(id);
  } else {
    try {
      keyObject = create();
    } catch {
      throw new Rejection("bad-public-key", UNPARSEABLE);
    }
    if (recentKeys.size >= RECENT_KEYS) recentKeys.delete(recentKeys.keys().next().value!);
  }
  recentKeys.set(id, keyObject);
  return keyObject;
}

/** A non-negative DER INTEGER's magnitude, without the sign byte; throws DerError for negative or padded ones. */
function unsignedInteger(buf: Uint8Array, t: Tlv): Uint8Array {
  if (t.tag !== TAG.INTEGER || t.end === t.contentStart) throw new DerError(`expected an INTEGER at offset ${t.start}`);
  const first = buf[t.contentStart]!;
  if (first & 0x80) throw new DerError(`negative INTEGER at offset ${t.start}`);
  if (first === 0 && t.end - t.contentStart > 1) {
    if (buf[t.contentStart + 1]! < 0x80) throw new DerError(`non-minimal INTEGER at offset ${t.start}`);
    return buf.subarray(t.contentStart + 1, t.end);
  }
  return first === 0 ? buf.subarray(t.end) : buf.subarray(t.contentStart, t.end);
}

function base64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("base64url");
}
