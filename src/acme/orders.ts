import crypto from "node:crypto";
import type { Context } from "hono";
import { checkIdentifiers, MAX_IDENTIFIERS } from "../policy/acme-identifiers.ts";
import { withTimeout } from "../with-timeout.ts";
import {
  authorizationWithChallenges,
  challengeWithAuthorization,
  insertOrder,
  orderById,
  orderWithAuthorizationIds,
  startChallengeOf,
  updateAuthorization,
  updateOrder,
  type OrderRow,
} from "../store/acme-orders.ts";
import { payloadObject } from "./accounts.ts";
import type { AcmeContext, AcmeDirectory } from "./context.ts";
import { checkReplaces } from "./renewal-info.ts";
import { AcmeProblem, type Subproblem } from "./problem.ts";
import { checkOrderRateLimits } from "./rate-limits.ts";
import { readSignedRequest, type SignedRequest } from "./signed-request.ts";
import type { AcmeUrls } from "./urls.ts";
import type { ValidationOutcome, ValidationRunner } from "./validation-runner.ts";
import { authorizationView, challengeView, orderView } from "./views.ts";

const ORDER_LIFETIME_MS = 7 * 86_400_000;
/** lego waits 5 s between polls unless told otherwise. */
const POLL_AFTER_SECONDS = "1";
/**
 * How long a challenge POST waits for the validation it started before it
 * answers "processing": most finish well within it (an http-01 fetch on
 * the same network), and then the answer is the outcome, so the client's
 * next poll of the authorization finds it valid instead of pending (one
 * request less per order: the ACME section of docs/benchmarks.md). The
 * client has provisioned the challenge before it posts (RFC 8555 §7.5.1):
 * validating while it waits is what step-ca does too.
 */
const ANSWER_WAIT_MS = 1_000;

/** newOrder (§7.4): identifiers checked against the directory's policy, one authorization each. */
export async function newOrder(c: Context, ctx: AcmeContext, dir: AcmeDirectory, urls: AcmeUrls): Promise<Response> {
  const req = await readSignedRequest(c, ctx, dir, urls, "kid");
  const account = req.account!;
  const p = payloadObject(req.jws.payload);
  if (p.notBefore !== undefined || p.notAfter !== undefined) {
    throw new AcmeProblem("malformed", "notBefore and notAfter are not supported: the profile decides the validity");
  }
  if (!Array.isArray(p.identifiers) || p.identifiers.length === 0) throw new AcmeProblem("malformed", "identifiers must be a non-empty array");
  if (p.identifiers.length > MAX_IDENTIFIERS) throw new AcmeProblem("rejectedIdentifier", `at most ${MAX_IDENTIFIERS} identifiers per order`);
  const requested = p.identifiers.map((id: unknown) => {
    const o = id as { type?: unknown; value?: unknown };
    if (typeof o?.type !== "string" || typeof o?.value !== "string") throw new AcmeProblem("malformed", "each identifier needs a string type and value");
    return { type: o.type, value: o.value };
  });
  const { accepted, problems } = checkIdentifiers(dir.profile, dir.certificateProfile, requested);
  if (problems.length) {
    const subproblems: Subproblem[] = problems.map((pr) => ({
      type: pr.type,
      detail: pr.detail,
      identifier: { type: pr.identifier.type as "dns" | "ip", value: pr.identifier.value },
    }));
    const first = problems[0]!;
    const type = problems.every((pr) => pr.type === first.type) ? first.type : "rejectedIdentifier";
    throw new AcmeProblem(type, problems.length === 1 ? first.detail : `${problems.length} identifiers were refused; see subproblems`, { subproblems });
  }
  const now = ctx.now();
  const replaces = p.replaces === undefined ? undefined : await checkReplaces(ctx, account.id, p.replaces, accepted);
  await checkOrderRateLimits(ctx.db, dir.profile, account.id, accepted, now);

  const expiresAt = new Date(now.getTime() + ORDER_LIFETIME_MS);
  const id = () => crypto.randomBytes(12).toString("base64url");
  const orderId = id();
  const { order, authorizationIds } = await insertOrder(ctx.db, {
    order: { id: orderId, accountId: account.id, directory: dir.profile.name, status: "pending", identifiers: accepted, expiresAt, replaces: replaces ?? null },
    authorizations: accepted.map((ident) => {
      const authzId = id();
      const wildcard = ident.type === "dns" && ident.value.startsWith("*.");
      // Wildcards are proved by DNS only; IP addresses never by DNS (RFC 8555 §7.1.3, RFC 8738 §7).
      const types = wildcard ? (["dns-01"] as const) : ident.type === "ip" ? (["http-01", "tls-alpn-01"] as const) : (["http-01", "dns-01", "tls-alpn-01"] as const);
      return {
        authorization: {
          id: authzId,
          orderId,
          accountId: account.id,
          identifierType: ident.type,
          identifierValue: wildcard ? ident.value.slice(2) : ident.value,
          wildcard,
          status: "pending" as const,
          expiresAt,
        },
        challenges: types.map((type) => ({ id: id(), authorizationId: authzId, type, token: crypto.randomBytes(32).toString("base64url"), status: "pending" as const })),
      };
    }),
  });
  ctx.log.info({ account: account.id, order: order.id, identifiers: accepted.map((i) => i.value) }, "ACME order created");
  c.header("location", urls.order(order.id));
  return c.json(orderView(order, authorizationIds, urls), 201);
}

/** POST-as-GET on an order (§7.1.3). */
export async function orderRequest(c: Context, ctx: AcmeContext, dir: AcmeDirectory, urls: AcmeUrls, id: string): Promise<Response> {
  const req = await readSignedRequest(c, ctx, dir, urls, "kid");
  postAsGet(req);
  const { order, authorizationIds } = await ownOrder(ctx, req, id);
  if (order.status === "processing") c.header("retry-after", POLL_AFTER_SECONDS);
  return c.json(orderView(order, authorizationIds, urls));
}

/** An authorization: fetch, or deactivate with {"status": "deactivated"} (§7.5, §7.5.2). */
export async function authorizationRequest(c: Context, ctx: AcmeContext, dir: AcmeDirectory, urls: AcmeUrls, id: string): Promise<Response> {
  const req = await readSignedRequest(c, ctx, dir, urls, "kid");
  let found = await authorizationWithChallenges(ctx.db, id);
  if (!found || found.authz.accountId !== req.account!.id) throw notFound("authorization");
  if (req.jws.payload !== undefined) {
    const { authz } = found;
    const p = payloadObject(req.jws.payload);
    if (p.status !== "deactivated") throw new AcmeProblem("malformed", 'an authorization can only be updated to {"status": "deactivated"}');
    if (authz.status !== "pending" && authz.status !== "valid") throw new AcmeProblem("malformed", `the authorization is ${authz.status}`);
    await updateAuthorization(ctx.db, authz.id, { status: "deactivated" });
    const order = await orderById(ctx.db, authz.orderId);
    if (order && (order.status === "pending" || order.status === "ready")) {
      await updateOrder(ctx.db, order.id, { status: "invalid", error: { type: "urn:ietf:params:acme:error:unauthorized", detail: "an authorization was deactivated", status: 403 } });
    }
    found = (await authorizationWithChallenges(ctx.db, id))!;
  }
  const { authz, challenges } = found;
  if (challenges.some((ch) => ch.status === "processing")) c.header("retry-after", POLL_AFTER_SECONDS);
  return c.json(authorizationView(authz, challenges, urls));
}

/** A challenge: POST {} asks the server to validate it (§7.5.1); POST-as-GET reads it. */
export async function challengeRequest(
  c: Context,
  ctx: AcmeContext,
  dir: AcmeDirectory,
  urls: AcmeUrls,
  id: string,
  runner: ValidationRunner,
): Promise<Response> {
  const req = await readSignedRequest(c, ctx, dir, urls, "kid");
  const accountId = req.account!.id;
  // POST {} on a pending challenge, the usual case: started in one statement.
  const started = req.jws.payload !== undefined && isObjectPayload(req.jws.payload) ? await startChallengeOf(ctx.db, id, accountId, ctx.now()) : undefined;
  let outcome: ValidationOutcome | undefined;
  if (started) {
    const validation = runner.start({ challenge: started.challenge, authz: started.authz, orderAuthorizations: started.orderAuthorizations, accountKey: req.jwk });
    // The validation never rejects: a rejection here is the wait running out.
    outcome = await withTimeout(validation, ANSWER_WAIT_MS).catch(() => undefined);
  }
  // Otherwise read it: someone else's (404), a bad payload, or one not to start (already started, done, or its authorization is not pending).
  const found = started ?? (await challengeWithAuthorization(ctx.db, id));
  if (!found || found.authz.accountId !== accountId) throw notFound("challenge");
  if (!started && req.jws.payload !== undefined) payloadObject(req.jws.payload);
  const { authz } = found;
  const ch = outcome ? { ...found.challenge, ...outcome } : found.challenge;
  c.header("link", `<${urls.authorization(authz.id)}>;rel="up"`);
  if (ch.status === "processing") c.header("retry-after", POLL_AFTER_SECONDS);
  return c.json(challengeView(ch, urls));
}

/** A payload payloadObject would accept (a JSON object), without throwing. */
function isObjectPayload(payload: unknown): boolean {
  try {
    payloadObject(payload);
    return true;
  } catch {
    return false;
  }
}

export function postAsGet(req: SignedRequest): void {
  if (req.jws.payload !== undefined) throw new AcmeProblem("malformed", 'this resource is read with POST-as-GET: send an empty payload ("")');
}

/** The account's order with the ids of its authorizations; an order past its expiry becomes invalid here. */
export async function ownOrder(ctx: AcmeContext, req: SignedRequest, id: string): Promise<{ order: OrderRow; authorizationIds: string[] }> {
  const found = await orderWithAuthorizationIds(ctx.db, id);
  if (!found || found.order.accountId !== req.account!.id) throw notFound("order");
  if (found.order.expiresAt <= ctx.now() && (found.order.status === "pending" || found.order.status === "ready")) {
    found.order = (await updateOrder(ctx.db, found.order.id, { status: "invalid", error: { type: "urn:ietf:params:acme:error:malformed", detail: "the order expired", status: 403 } }))!;
  }
  return found;
}

export function notFound(what: string): AcmeProblem {
  return new AcmeProblem("malformed", `no such ${what} for this account`, { status: 404 });
}
