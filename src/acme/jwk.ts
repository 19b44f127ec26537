/**
 * ACME account keys as JSON Web Keys (RFC 7517, RFC 7518 §6, RFC 8037).
 *
 * publicJwk() is the one gate every key from a client passes through: it
 * validates the key against what this server accepts and reduces it to the
 * members RFC 7638 hashes, so that a stored key, its thumbprint and a key
 * compared later are all the same canonical object.
 *
 * Refusals:
 *  - "malformed"    the JWK is not a JSON object, or a required member is
 *                   missing, not a string, or not base64url;
 *  - "badPublicKey" the JWK is well formed but not a key we accept: private
 *                   key material, unsupported kty or curve, RSA modulus
 *                   outside 2048..8192 bits or weak exponent, a point that is
 *                   not on its curve.
 */
import crypto from "node:crypto";
import { AcmeProblem } from "./problem.ts";

/** JWS algorithms accepted for account keys, in order of preference. */
export const SUPPORTED_ALGS = ["ES256", "ES384", "RS256", "EdDSA"] as const;
export type SupportedAlg = (typeof SUPPORTED_ALGS)[number];

export interface EcPublicJwk {
  kty: "EC";
  crv: "P-256" | "P-384";
  x: string;
  y: string;
}
export interface RsaPublicJwk {
  kty: "RSA";
  n: string;
  e: string;
}
export interface OkpPublicJwk {
  kty: "OKP";
  crv: "Ed25519";
  x: string;
}
/** A validated public key holding exactly its RFC 7638 required members. */
export type PublicJwk = EcPublicJwk | RsaPublicJwk | OkpPublicJwk;

export const RSA_MIN_BITS = 2048;
export const RSA_MAX_BITS = 8192;

/** Private-key members of RFC 7518 §6.2.2, §6.3.2, §6.4 and RFC 8037 §2. */
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] as const;

/** Coordinate length in octets per supported curve. */
const EC_COORDINATE_OCTETS = { "P-256": 32, "P-384": 48 } as const;
const ED25519_OCTETS = 32;

const BASE64URL = /^[A-Za-z0-9_-]*$/;

/**
 * Strict base64url (RFC 4648 §5, no padding, RFC 7515 §2): only the URL-safe
 * alphabet, no "=", and canonical (the unused low bits of the last character
 * are zero), so that each octet string has exactly one accepted encoding.
 * Returns undefined when the text is not such an encoding.
 */
export function decodeBase64url(text: string): Buffer | undefined {
  if (!BASE64URL.test(text) || text.length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, "base64url");
  if (bytes.toString("base64url") !== text) return undefined;
  return bytes;
}

export function encodeBase64url(bytes: Buffer | Uint8Array | string): string {
  return Buffer.from(bytes).toString("base64url");
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** A required base64url member, decoded; "malformed" when absent or not base64url. */
function member(jwk: Record<string, unknown>, name: string): Buffer {
  const value = jwk[name];
  if (typeof value !== "string" || value === "") {
    throw new AcmeProblem("malformed", `JWK member "${name}" is missing or not a string`);
  }
  const bytes = decodeBase64url(value);
  if (!bytes) throw new AcmeProblem("malformed", `JWK member "${name}" is not base64url`);
  return bytes;
}

/** Bit length of an unsigned big-endian integer without leading zero octets. */
function bitLength(bytes: Buffer): number {
  const first = bytes[0] ?? 0;
  return (bytes.length - 1) * 8 + (32 - Math.clz32(first));
}

/**
 * Validates a client-supplied JWK as an account (or certificate) public key and
 * returns it reduced to its RFC 7638 members, ready to store and compare.
 */
export function publicJwk(jwk: unknown): PublicJwk {
  if (!isObject(jwk)) throw new AcmeProblem("malformed", "JWK is not a JSON object");
  for (const name of PRIVATE_MEMBERS) {
    if (name in jwk) {
      throw new AcmeProblem("badPublicKey", `JWK contains private key member "${name}"; send the public key only`);
    }
  }
  const kty = jwk.kty;
  if (typeof kty !== "string") throw new AcmeProblem("malformed", 'JWK member "kty" is missing or not a string');

  let result: PublicJwk;
  switch (kty) {
    case "EC": {
      const crv = jwk.crv;
      if (crv !== "P-256" && crv !== "P-384") {
        throw new AcmeProblem("badPublicKey", `unsupported EC curve ${JSON.stringify(crv)}; use P-256 or P-384`);
      }
      const x = member(jwk, "x");
      const y = member(jwk, "y");
      const octets = EC_COORDINATE_OCTETS[crv];
      // RFC 7518 §6.2.1.2/3: coordinates are the full field size, leading zeros kept.
      if (x.length !== octets || y.length !== octets) {
        throw new AcmeProblem("badPublicKey", `EC ${crv} coordinates must be ${octets} octets`);
      }
      result = { kty: "EC", crv, x: jwk.x as string, y: jwk.y as string };
      break;
    }
    case "RSA": {
      const n = member(jwk, "n");
      const e = member(jwk, "e");
      // RFC 7518 §6.3.1.1/2: minimal encoding. A non-minimal encoding would give
      // the same key a different thumbprint from the one the client computes.
      if (n[0] === 0 || e[0] === 0) {
        throw new AcmeProblem("badPublicKey", "RSA modulus and exponent must be encoded without leading zero octets");
      }
      const bits = bitLength(n);
      if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS) {
        throw new AcmeProblem(
          "badPublicKey",
          `RSA modulus of ${bits} bits is not accepted; use ${RSA_MIN_BITS} to ${RSA_MAX_BITS} bits`,
        );
      }
      if ((n[n.length - 1]! & 1) === 0) throw new AcmeProblem("badPublicKey", "RSA modulus is even");
      // NIST SP 800-56B: odd public exponent with 2^16 < e < 2^256.
      const eBits = bitLength(e);
      if ((e[e.length - 1]! & 1) === 0 || eBits < 17 || eBits > 256) {
        throw new AcmeProblem("badPublicKey", "RSA public exponent must be odd and between 2^16+1 and 2^256");
      }
      result = { kty: "RSA", n: jwk.n as string, e: jwk.e as string };
      break;
    }
    case "OKP": {
      const crv = jwk.crv;
      if (crv !== "Ed25519") {
        throw new AcmeProblem("badPublicKey", `unsupported OKP curve ${JSON.stringify(crv)}; use Ed25519`);
      }
      const x = member(jwk, "x");
      if (x.length !== ED25519_OCTETS) throw new AcmeProblem("badPublicKey", "Ed25519 key must be 32 octets");
      result = { kty: "OKP", crv, x: jwk.x as string };
      break;
    }
    default:
      throw new AcmeProblem("badPublicKey", `unsupported key type ${JSON.stringify(kty)}; use EC, RSA or OKP`);
  }

  // Let OpenSSL have the last word (e.g. it refuses EC points not on the curve).
  try {
    keyObjectOf(result);
  } catch {
    throw new AcmeProblem("badPublicKey", "JWK is not a valid public key");
  }
  return result;
}

/** The JWS algorithm a key signs with: one key, one algorithm. */
export function algorithmOf(jwk: PublicJwk): SupportedAlg {
  switch (jwk.kty) {
    case "EC":
      return jwk.crv === "P-256" ? "ES256" : "ES384";
    case "RSA":
      return "RS256";
    case "OKP":
      return "EdDSA";
  }
}

/**
 * RFC 7638 thumbprint: SHA-256 over the required members in lexicographic
 * order, no whitespace, base64url. (Member values are base64url or fixed
 * names, so JSON.stringify needs no escaping decisions.)
 */
export function jwkThumbprint(jwk: PublicJwk): string {
  let canonical: string;
  switch (jwk.kty) {
    case "EC":
      canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
      break;
    case "RSA":
      canonical = JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n });
      break;
    case "OKP":
      canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x });
      break;
  }
  return crypto.createHash("sha256").update(canonical, "utf8").digest("base64url");
}

/** Thumbprint equality in constant time (thumbprints are all 43 characters). */
export function sameKey(a: PublicJwk, b: PublicJwk): boolean {
  const ta = Buffer.from(jwkThumbprint(a));
  const tb = Buffer.from(jwkThumbprint(b));
  return ta.length === tb.length && crypto.timingSafeEqual(ta, tb);
}

export function keyObjectOf(jwk: PublicJwk): crypto.KeyObject {
  // Every signed request verifies with its account's key: decoding the JWK
  // (an EC point check, say) each time cost more than the verification.
  const cacheKey = JSON.stringify(jwk);
  let key = keyObjects.get(cacheKey);
  if (!key) {
    key = crypto.createPublicKey({ key: { ...jwk }, format: "jwk" });
    if (keyObjects.size >= KEY_OBJECT_CACHE_MAX) keyObjects.clear();
    keyObjects.set(cacheKey, key);
  }
  return key;
}

/** Public keys only: nothing secret is kept. Bounded; cleared when full. */
const keyObjects = new Map<string, crypto.KeyObject>();
const KEY_OBJECT_CACHE_MAX = 10_000;

/**
 * The JWK of a DER SubjectPublicKeyInfo (e.g. a certificate's key, for
 * revokeCert signed by the certificate key: compare jwkThumbprint()s).
 * Goes through publicJwk(), so a key this server would not accept as a JWS
 * key is refused the same way ("badPublicKey").
 */
export function jwkFromSpki(spkiDer: ArrayBuffer | Uint8Array): PublicJwk {
  let exported: unknown;
  try {
    const der = spkiDer instanceof ArrayBuffer ? Buffer.from(spkiDer) : Buffer.from(spkiDer);
    exported = crypto.createPublicKey({ key: der, format: "der", type: "spki" }).export({ format: "jwk" });
  } catch {
    throw new AcmeProblem("badPublicKey", "public key cannot be expressed as a supported JWK");
  }
  return publicJwk(exported);
}
