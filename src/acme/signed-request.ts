import type { Context } from "hono";
import type { AcmeAccountRow } from "../store/acme-accounts.ts";
import { useNonceAndReadAccount } from "../store/acme-nonces.ts";
import type { AcmeContext, AcmeDirectory } from "./context.ts";
import { publicJwk, type PublicJwk } from "./jwk.ts";
import { parseJwsText, verifyJws, type ParsedJws } from "./jws.ts";
import { freshNonce, wellFormedNonce } from "./nonces.ts";
import { AcmeProblem } from "./problem.ts";
import { limitAccountRate } from "./rate-limits.ts";
import { requestBody } from "../http/request-body.ts";
import type { AcmeUrls } from "./urls.ts";

/** The Hono variable holding the nonce already stored for this request's response. */
const REPLY_NONCE = "acmeReplyNonce";

/** The nonce readSignedRequest stored for this request's response, if it got that far. */
export function storedReplyNonce(c: Context): string | undefined {
  return c.get(REPLY_NONCE) as string | undefined;
}

export interface SignedRequest {
  jws: ParsedJws;
  /** The key that signed the request. */
  jwk: PublicJwk;
  /** The signing account (kid requests). */
  account?: AcmeAccountRow;
  /** The request URL, as the client signed it. */
  url: string;
}

/**
 * RFC 8555 §6.2-6.5, in order: media type, JWS syntax, nonce, url, then the
 * key (jwk for newAccount and revokeCert-by-certificate-key, kid elsewhere)
 * and the signature.
 */
export async function readSignedRequest(
  c: Context,
  ctx: AcmeContext,
  dir: AcmeDirectory,
  urls: AcmeUrls,
  keyFrom: "jwk" | "kid" | "either",
): Promise<SignedRequest> {
  const type = (c.req.header("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "application/jose+json") {
    throw new AcmeProblem("malformed", `Content-Type must be application/jose+json, not "${type || "(none)"}"`, { status: 415 });
  }
  const jws = parseJwsText(new Uint8Array(await requestBody(c)));
  const h = jws.header;
  // One statement uses the nonce, stores the response's next one and reads the kid's account (see useNonceAndReadAccount).
  const accountId = h.jwk === undefined && h.kid !== undefined ? urls.accountIdOf(String(h.kid)) : undefined;
  const reply = freshNonce(ctx.now());
  const { nonceUsed, account } = await useNonceAndReadAccount(ctx.db, wellFormedNonce(h.nonce), reply, ctx.now(), accountId ?? undefined);
  c.set(REPLY_NONCE, reply.value);
  if (!nonceUsed) {
    throw new AcmeProblem("badNonce", h.nonce === undefined ? "the JWS has no nonce" : "the nonce is unknown, expired or already used");
  }
  const url = urls.origin + new URL(c.req.url).pathname;
  if (h.url !== url) {
    throw new AcmeProblem("unauthorized", `the JWS "url" (${String(h.url)}) is not the URL requested (${url})`);
  }
  if (h.jwk !== undefined && keyFrom === "kid") throw new AcmeProblem("malformed", 'this request must be signed with "kid", not "jwk"');
  if (h.kid !== undefined && keyFrom === "jwk") throw new AcmeProblem("malformed", 'this request must be signed with "jwk", not "kid"');

  if (h.jwk !== undefined) {
    const jwk = publicJwk(h.jwk);
    await verifyJws(jws, jwk);
    return { jws, jwk, url };
  }
  if (!account || account.directory !== dir.profile.name) {
    throw new AcmeProblem("accountDoesNotExist", `no account ${String(h.kid)} in this directory`);
  }
  const jwk = publicJwk(account.jwk);
  await verifyJws(jws, jwk);
  // The request log names the account whose key verified, also when the request is refused from here on.
  c.set("acmeAccount", account.id);
  if (account.status !== "valid") throw new AcmeProblem("unauthorized", `the account is ${account.status}`);
  limitAccountRate(ctx, account.id);
  return { jws, jwk, account, url };
}
