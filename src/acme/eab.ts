/**
 * External account binding (RFC 8555 §7.3.4): the newAccount payload's
 * "externalAccountBinding" is a flattened JWS, MACed with a key the CA gave
 * the subscriber out of band, whose payload is the new account's JWK.
 *
 * Refusal types:
 *  - "malformed":    not a flattened JWS; alg not HS256/HS384/HS512; kid
 *                    missing; nonce present; url missing or not the
 *                    newAccount URL; payload not a JWK;
 *  - "unauthorized": unknown kid, MAC does not verify, the key may not bind
 *                    this account (already used, another directory's), or
 *                    the payload is a different key from the one that
 *                    signed newAccount.
 * A key that may not bind is called unknown unless its MAC verifies: only
 * the holder of the HMAC key learns that it exists and why it is refused.
 * (Whether EAB is required at all, "externalAccountRequired", is the
 * caller's decision.)
 */
import crypto from "node:crypto";
import { AcmeProblem } from "./problem.ts";
import { publicJwk, sameKey, type PublicJwk } from "./jwk.ts";
import { decodeFlattenedJws } from "./jws.ts";

/** MAC algorithms accepted for the binding, with their HMAC digests. */
export const EAB_ALGS = { HS256: "sha256", HS384: "sha384", HS512: "sha512" } as const;

export interface EabOptions {
  /** The key of the outer newAccount JWS (already validated and verified). */
  outerJwk: PublicJwk;
  /** The newAccount URL, i.e. the outer JWS's url. */
  url: string;
  /** The HMAC key for an EAB key identifier, undefined when unknown. */
  lookupKey: (kid: string) => Promise<EabKeyLookup | undefined>;
}

export interface EabKeyLookup {
  hmacKey: Buffer;
  /** Why this key may not bind the account (already used, another directory's): told only once its MAC verifies. */
  refusal?: string;
}

/** Verifies the binding and returns its key identifier. */
export async function verifyExternalAccountBinding(eab: unknown, opts: EabOptions): Promise<string> {
  const jws = decodeFlattenedJws(eab, "externalAccountBinding");
  const header = jws.header;

  const alg = header.alg;
  if (typeof alg !== "string" || !Object.hasOwn(EAB_ALGS, alg)) {
    throw new AcmeProblem(
      "malformed",
      `externalAccountBinding alg must be one of ${Object.keys(EAB_ALGS).join(", ")}, not ${JSON.stringify(alg)}`,
    );
  }
  const digest = EAB_ALGS[alg as keyof typeof EAB_ALGS];
  const kid = header.kid;
  if (typeof kid !== "string" || kid === "") {
    throw new AcmeProblem("malformed", 'externalAccountBinding has no "kid"');
  }
  if ("nonce" in header) throw new AcmeProblem("malformed", 'externalAccountBinding must not have a "nonce"');
  if (header.url !== opts.url) {
    throw new AcmeProblem("malformed", 'externalAccountBinding "url" must be the newAccount URL');
  }

  let payload: unknown;
  try {
    payload = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(jws.payloadBytes));
  } catch {
    throw new AcmeProblem("malformed", "externalAccountBinding payload is not JSON");
  }
  let boundKey: PublicJwk;
  try {
    boundKey = publicJwk(payload);
  } catch (err) {
    const why = err instanceof AcmeProblem ? err.detail : String(err);
    throw new AcmeProblem("malformed", `externalAccountBinding payload is not an acceptable JWK: ${why}`);
  }

  const found = await opts.lookupKey(kid);
  const notKnown = new AcmeProblem("unauthorized", "externalAccountBinding key identifier is not known");
  if (!found || found.hmacKey.length === 0) throw notKnown;
  const expected = crypto.createHmac(digest, found.hmacKey).update(jws.signingInput, "ascii").digest();
  if (jws.signature.length !== expected.length || !crypto.timingSafeEqual(jws.signature, expected)) {
    // A key that could not bind anyway stays as unknown as before to whoever does not hold it.
    throw found.refusal ? notKnown : new AcmeProblem("unauthorized", "externalAccountBinding MAC is invalid");
  }
  if (found.refusal) throw new AcmeProblem("unauthorized", `externalAccountBinding ${found.refusal}`);

  if (!sameKey(boundKey, opts.outerJwk)) {
    throw new AcmeProblem("unauthorized", "externalAccountBinding binds a different key from the account key");
  }
  return kid;
}
