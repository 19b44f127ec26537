/**
 * A test-side ACME client signer: account keys and flattened JWS bodies
 * (RFC 8555 §6.2) built the way an ACME client builds them. Deliberately
 * independent of src/acme, so tests of the server do not grade the server's
 * own homework.
 */
import crypto from "node:crypto";

export type AccountKeyKind = "ES256" | "ES384" | "RS256" | "EdDSA";

export interface AccountKey {
  privateKey: crypto.KeyObject;
  /** The public JWK (only public members), as sent in a "jwk" header. */
  jwk: Record<string, string>;
  alg: AccountKeyKind;
}

export interface FlattenedJwsBody {
  protected: string;
  payload: string;
  signature: string;
}

export interface JwsHeaderOptions {
  nonce?: string;
  url?: string;
  /** Account URL; when given the header carries "kid" instead of "jwk". */
  kid?: string;
  /** Include "jwk" even with a kid (to produce invalid requests). */
  useJwk?: boolean;
  /** Header alg; defaults to the key's algorithm. The signature always uses the key's own algorithm. */
  alg?: string;
  /** Extra protected-header members, merged last (an undefined value removes a member). */
  extra?: Record<string, unknown>;
}

export const b64url = (data: Buffer | Uint8Array | string): string => Buffer.from(data).toString("base64url");

export function newAccountKey(kind: AccountKeyKind, opts: { rsaBits?: number } = {}): AccountKey {
  let pair: crypto.KeyPairKeyObjectResult;
  switch (kind) {
    case "ES256":
      pair = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
      break;
    case "ES384":
      pair = crypto.generateKeyPairSync("ec", { namedCurve: "P-384" });
      break;
    case "RS256":
      pair = crypto.generateKeyPairSync("rsa", { modulusLength: opts.rsaBits ?? 2048 });
      break;
    case "EdDSA":
      pair = crypto.generateKeyPairSync("ed25519");
      break;
  }
  const jwk = pair.publicKey.export({ format: "jwk" }) as Record<string, string>;
  return { privateKey: pair.privateKey, jwk, alg: kind };
}

/** Signs `signingInput` with the key's own algorithm (ECDSA as raw R || S). */
export function signBytes(key: AccountKey, signingInput: string): Buffer {
  const data = Buffer.from(signingInput, "ascii");
  switch (key.alg) {
    case "ES256":
      return crypto.sign("sha256", data, { key: key.privateKey, dsaEncoding: "ieee-p1363" });
    case "ES384":
      return crypto.sign("sha384", data, { key: key.privateKey, dsaEncoding: "ieee-p1363" });
    case "RS256":
      return crypto.sign("sha256", data, key.privateKey);
    case "EdDSA":
      return crypto.sign(null, data, key.privateKey);
  }
}

/** Lowest level: an arbitrary protected header and already-encoded payload. */
export function signFlattened(key: AccountKey, header: Record<string, unknown>, payloadB64: string): FlattenedJwsBody {
  const protectedB64 = b64url(JSON.stringify(header));
  const signature = b64url(signBytes(key, `${protectedB64}.${payloadB64}`));
  return { protected: protectedB64, payload: payloadB64, signature };
}

/** The protected header an ACME client would send. */
export function protectedHeader(key: AccountKey, opts: JwsHeaderOptions = {}): Record<string, unknown> {
  const header: Record<string, unknown> = { alg: opts.alg ?? key.alg };
  if (opts.kid === undefined || opts.useJwk) header.jwk = key.jwk;
  if (opts.kid !== undefined) header.kid = opts.kid;
  if (opts.nonce !== undefined) header.nonce = opts.nonce;
  if (opts.url !== undefined) header.url = opts.url;
  return { ...header, ...opts.extra };
}

/**
 * A flattened JWS request body. payload "" is POST-as-GET; an object is
 * JSON-encoded.
 */
export function signJws(key: AccountKey, payload: object | "", opts: JwsHeaderOptions = {}): FlattenedJwsBody {
  const payloadB64 = payload === "" ? "" : b64url(JSON.stringify(payload));
  return signFlattened(key, protectedHeader(key, opts), payloadB64);
}

/** RFC 7638 thumbprint of a public JWK (EC, RSA, OKP). */
export function thumbprint(jwk: Record<string, string>): string {
  const members: Record<string, string[]> = { EC: ["crv", "kty", "x", "y"], RSA: ["e", "kty", "n"], OKP: ["crv", "kty", "x"] };
  const names = members[jwk.kty ?? ""];
  if (!names) throw new Error(`no thumbprint members for kty ${jwk.kty}`);
  const canonical = `{${names.map((n) => `${JSON.stringify(n)}:${JSON.stringify(jwk[n])}`).join(",")}}`;
  return crypto.createHash("sha256").update(canonical).digest("base64url");
}

/** RFC 8555 §8.1 key authorization for a challenge token. */
export const keyAuthorization = (token: string, jwk: Record<string, string>): string => `${token}.${thumbprint(jwk)}`;

/**
 * An externalAccountBinding value (RFC 8555 §7.3.4) for newAccount:
 * HMAC over the account JWK with the CA-issued key.
 */
export function signEab(
  kid: string,
  hmacKeyBase64url: string,
  accountJwk: object,
  url: string,
  opts: { alg?: "HS256" | "HS384" | "HS512"; extra?: Record<string, unknown> } = {},
): FlattenedJwsBody {
  const alg = opts.alg ?? "HS256";
  const digest = { HS256: "sha256", HS384: "sha384", HS512: "sha512" }[alg];
  const protectedB64 = b64url(JSON.stringify({ alg, kid, url, ...opts.extra }));
  const payloadB64 = b64url(JSON.stringify(accountJwk));
  const mac = crypto
    .createHmac(digest, Buffer.from(hmacKeyBase64url, "base64url"))
    .update(`${protectedB64}.${payloadB64}`)
    .digest();
  return { protected: protectedB64, payload: payloadB64, signature: b64url(mac) };
}
