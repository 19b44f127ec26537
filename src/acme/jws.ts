/**
 * ACME request bodies: JWS in the flattened JSON serialization (RFC 8555 §6.2,
 * RFC 7515 §7.2.2).
 *
 * parseJws() checks the structure and the protected header; the caller then
 * picks the key (publicJwk(header.jwk) for newAccount and revokeCert by
 * certificate key, the account's stored key for header.kid), calls
 * verifyJws(), and only then checks nonce and url, which parseJws() exposes
 * but does not require: a missing nonce is "badNonce" (RFC 8555 §6.5), a url
 * other than the request URL "unauthorized" (§6.4); both for the caller.
 *
 * Refusal types:
 *  - "badSignatureAlgorithm" (with `algorithms`): alg is "none", a MAC, or
 *    any algorithm outside SUPPORTED_ALGS; alg does not fit the key;
 *  - "malformed": everything else, including a signature that does not verify.
 */
import crypto from "node:crypto";
import { AcmeProblem } from "./problem.ts";
import { SUPPORTED_ALGS, algorithmOf, decodeBase64url, keyObjectOf, type PublicJwk } from "./jwk.ts";

export { SUPPORTED_ALGS };

/** Largest request body the HTTP layer should accept (bytes). */
export const MAX_JWS_BYTES = 64 * 1024;

export interface ProtectedHeader {
  alg: string;
  nonce?: string;
  url?: string;
  jwk?: unknown;
  kid?: string;
  [k: string]: unknown;
}

export interface ParsedJws {
  header: ProtectedHeader;
  /** The decoded JSON object; undefined for POST-as-GET (empty payload). */
  payload: unknown;
  /** ASCII(BASE64URL(protected) || "." || BASE64URL(payload)), RFC 7515 §5.1. */
  signingInput: string;
  signature: Buffer;
  raw: { protected: string; payload: string; signature: string };
}

/** A flattened JWS decoded but not interpreted; shared with the EAB check. */
export interface FlattenedJws {
  header: Record<string, unknown>;
  /** Decoded payload octets (empty for an empty payload). */
  payloadBytes: Buffer;
  signingInput: string;
  signature: Buffer;
  raw: { protected: string; payload: string; signature: string };
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** JSON text as an object, or undefined when it is not valid UTF-8 JSON naming an object. */
function jsonObject(bytes: Buffer): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(utf8.decode(bytes));
    return isObject(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The structural part of RFC 7515 §7.2.2 / §5.2: a JSON object with string
 * members protected, payload and signature, each strict base64url; the
 * protected header a JSON object. `what` names the object in details.
 */
export function decodeFlattenedJws(body: unknown, what = "JWS"): FlattenedJws {
  if (typeof body === "string") {
    throw new AcmeProblem("malformed", `${what} must use the flattened JSON serialization, not the compact one`);
  }
  if (!isObject(body)) throw new AcmeProblem("malformed", `${what} is not a JSON object`);
  if ("signatures" in body) {
    throw new AcmeProblem("malformed", `${what} must use the flattened JSON serialization, not the general one`);
  }
  // RFC 8555 §6.2: the JWS Unprotected Header MUST NOT be used. Other unknown
  // members are ignored, as RFC 7515 §7.2.1 requires.
  if ("header" in body) throw new AcmeProblem("malformed", `${what} must not have an unprotected header`);

  const raw = { protected: body.protected, payload: body.payload, signature: body.signature };
  for (const [name, value] of Object.entries(raw)) {
    if (typeof value !== "string") throw new AcmeProblem("malformed", `${what} member "${name}" is missing or not a string`);
  }
  const r = raw as { protected: string; payload: string; signature: string };

  const protectedBytes = decodeBase64url(r.protected);
  const payloadBytes = decodeBase64url(r.payload);
  const signature = decodeBase64url(r.signature);
  if (!protectedBytes || !payloadBytes || !signature) {
    throw new AcmeProblem("malformed", `${what} members must be unpadded base64url`);
  }
  const header = jsonObject(protectedBytes);
  if (!header) throw new AcmeProblem("malformed", `${what} protected header is not a JSON object`);
  // RFC 7515 §4.1.11: we understand no extensions, so any "crit" is fatal.
  // (This also keeps out RFC 7797 "b64": false, which changes the signing input.)
  if ("crit" in header) throw new AcmeProblem("malformed", `${what} protected header has unsupported "crit" extensions`);

  return { header, payloadBytes, signingInput: `${r.protected}.${r.payload}`, signature, raw: r };
}

/** The badSignatureAlgorithm refusal, listing what we accept (RFC 8555 §6.2). */
export function badSignatureAlgorithm(detail: string): AcmeProblem {
  return new AcmeProblem("badSignatureAlgorithm", detail, { algorithms: [...SUPPORTED_ALGS] });
}

/**
 * Parses an ACME request body already decoded from JSON (a string is taken
 * as a compact-serialized JWS and refused; see parseJwsText for raw bodies).
 */
export function parseJws(body: unknown): ParsedJws {
  const jws = decodeFlattenedJws(body);
  const header = jws.header;

  const alg = header.alg;
  if (typeof alg !== "string" || alg === "") {
    throw new AcmeProblem("malformed", 'JWS protected header has no "alg"');
  }
  if (!(SUPPORTED_ALGS as readonly string[]).includes(alg)) {
    const why = alg === "none" ? "unsigned JWS" : /^HS\d+$/.test(alg) ? "MAC algorithms" : "algorithm";
    throw badSignatureAlgorithm(`${why} ${JSON.stringify(alg)} not accepted; use one of ${SUPPORTED_ALGS.join(", ")}`);
  }

  const hasJwk = "jwk" in header;
  const hasKid = "kid" in header;
  if (hasJwk === hasKid) {
    throw new AcmeProblem("malformed", 'JWS protected header must have exactly one of "jwk" and "kid"');
  }
  if (hasKid && (typeof header.kid !== "string" || header.kid === "")) {
    throw new AcmeProblem("malformed", 'JWS "kid" must be an account URL');
  }
  if (hasJwk && !isObject(header.jwk)) throw new AcmeProblem("malformed", 'JWS "jwk" is not a JSON object');
  // RFC 8555 §6.5.2: a nonce that is not base64url is malformed (not badNonce).
  if ("nonce" in header && (typeof header.nonce !== "string" || header.nonce === "" || !decodeBase64url(header.nonce))) {
    throw new AcmeProblem("malformed", 'JWS "nonce" is not a base64url string');
  }
  if ("url" in header && (typeof header.url !== "string" || header.url === "")) {
    throw new AcmeProblem("malformed", 'JWS "url" is not a string');
  }

  if (jws.signature.length === 0) throw new AcmeProblem("malformed", "JWS signature is empty");

  let payload: unknown;
  if (jws.raw.payload === "") {
    payload = undefined; // POST-as-GET, RFC 8555 §6.3
  } else {
    payload = jsonObject(jws.payloadBytes);
    if (payload === undefined) throw new AcmeProblem("malformed", "JWS payload is not a JSON object");
  }

  return {
    header: header as ProtectedHeader,
    payload,
    signingInput: jws.signingInput,
    signature: jws.signature,
    raw: jws.raw,
  };
}

/**
 * Parses a raw request body (the HTTP layer's text or bytes): enforces
 * MAX_JWS_BYTES, recognises the compact serialization, and parses the JSON.
 */
export function parseJwsText(text: string | Uint8Array): ParsedJws {
  const bytes = typeof text === "string" ? Buffer.from(text, "utf8") : Buffer.from(text);
  if (bytes.length > MAX_JWS_BYTES) {
    throw new AcmeProblem("malformed", `request body exceeds ${MAX_JWS_BYTES} bytes`);
  }
  let body: unknown;
  try {
    body = JSON.parse(utf8.decode(bytes));
  } catch {
    const trimmed = bytes.toString("latin1").trim();
    if (/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/.test(trimmed)) body = trimmed; // compact: refused below
    else throw new AcmeProblem("malformed", "request body is not JSON");
  }
  return parseJws(body);
}

/** Signature parameters per algorithm: digest, and expected signature length if fixed. */
function signatureSpec(alg: string, key: PublicJwk): { digest: string | null; length?: number } {
  switch (alg) {
    case "ES256":
      return { digest: "sha256", length: 64 };
    case "ES384":
      return { digest: "sha384", length: 96 };
    case "RS256":
      return { digest: "sha256", length: key.kty === "RSA" ? Buffer.from(key.n, "base64url").length : undefined };
    default: // EdDSA (Ed25519)
      return { digest: null, length: 64 };
  }
}

/**
 * Verifies the JWS signature with `key` (a publicJwk()-validated key).
 *
 * The alg must be the one the key signs with (RFC 8555 §6.2 requires the
 * server to check alg against the key): else badSignatureAlgorithm.
 *
 * A signature that does not verify is "malformed". RFC 8555 names no error
 * type for it; "unauthorized" means an identified client is not allowed to do
 * something, whereas an unverifiable request identifies nobody: the request
 * itself is bad. Boulder and Pebble answer "malformed" too, and clients do not
 * treat it as "retry with a new nonce" (which is "badNonce").
 */
export async function verifyJws(jws: ParsedJws, key: PublicJwk): Promise<void> {
  const expected = algorithmOf(key);
  if (jws.header.alg !== expected) {
    const keyName = key.kty === "RSA" ? "an RSA key" : `an ${key.kty} ${key.crv} key`;
    throw badSignatureAlgorithm(`JWS alg ${JSON.stringify(jws.header.alg)} does not match ${keyName}, which signs with ${expected}`);
  }
  const spec = signatureSpec(expected, key);
  // ECDSA in JWS is the fixed-width R || S (RFC 7518 §3.4), never DER.
  const ok =
    (spec.length === undefined || jws.signature.length === spec.length) &&
    // On libuv's thread pool (node:crypto's callback form): every signed request checks one signature, and on the
    // event loop those were a share of each ACME order's main-thread time (the ACME section of docs/benchmarks.md).
    (await new Promise<boolean>((resolve) => {
      try {
        const data = Buffer.from(jws.signingInput, "ascii");
        crypto.verify(spec.digest, data, { key: keyObjectOf(key), dsaEncoding: "ieee-p1363" }, jws.signature, (err, valid) => resolve(!err && valid));
      } catch {
        resolve(false);
      }
    }));
  if (!ok) throw new AcmeProblem("malformed", "JWS signature is invalid");
}
