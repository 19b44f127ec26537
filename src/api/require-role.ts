import { createMiddleware } from "hono/factory";
import type { Context } from "hono";
import { withActor } from "../audit/actor.ts";
import { authenticate, knownValidToken, type Principal } from "../auth/api-tokens.ts";
import { Rejection } from "../errors.ts";
import type { AuthFailure } from "./auth-failures.ts";
import type { AppContext, AppEnv } from "./context.ts";
import { problem } from "./problem.ts";
import { limitTokenRate } from "../policy/rate-limit.ts";

/**
 * Bearer token authentication, then a role check. 401 for no or a bad
 * token, 429 for an address over its authentication-failure limit
 * (src/api/auth-failures.ts), 403 for a token whose role may not use the route.
 */
export function requireRole(ctx: AppContext, allowed: (p: Principal) => boolean) {
  return createMiddleware<AppEnv>(async (c, next) => {
    const header = c.req.header("authorization") ?? "";
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    const principal = await authenticateOrCount(ctx, c, m?.[1], m ? "unknown token" : "no bearer token");
    if (!principal) {
      c.header("www-authenticate", 'Bearer realm="hsm-ca"');
      return problem(c, "unauthorized", m ? "the API token is not valid" : "send an API token as 'Authorization: Bearer <token>'");
    }
    if (!allowed(principal)) {
      ctx.audit?.record({
        kind: "auth.failure",
        actor: `token:${principal.tokenId}`,
        result: "error",
        details: { route: c.req.path, method: c.req.method, reason: `role ${principal.role} may not use this route` },
      });
      return problem(c, "forbidden", `an ${principal.role} token may not ${c.req.method} ${c.req.path}`);
    }
    c.set("principal", principal);
    limitTokenRate(ctx, principal.tokenId);
    // Whatever the request does next (HSM key uses included) is done as this token.
    await withActor(`token:${principal.tokenId}`, () => next());
  });
}

/**
 * The token's principal, or undefined after counting the failure for the
 * client's address (audit: the first of its kind now, the rest in the
 * window's summary). Throws rate-limited, before any lookup, while the
 * address is over its limit, unless the token is one this process knows valid.
 * Used by the REST API and the dashboard's login.
 */
export async function authenticateOrCount(ctx: AppContext, c: Context, secret: string | undefined, reason: string): Promise<Principal | undefined> {
  const failures = ctx.authFailures;
  const address = clientAddress(c);
  const wait = failures.retryAfter(address);
  if (wait > 0 && !knownValidToken(ctx.store.db, secret)) {
    failures.rateLimited(address, { route: c.req.path });
    ctx.metrics?.rateLimited.inc({ limiter: "auth_failure" });
    throw new Rejection("rate-limited", `too many failed authentications from this address (limit ${failures.settings.limit} a window); retry in ${wait} s`, {
      retryAfterSeconds: wait,
    });
  }
  const principal = await authenticate(ctx.store.db, secret);
  if (principal) return principal;
  // The id part of something shaped like a token is public; the rest never goes anywhere.
  const failure: AuthFailure = { route: c.req.path, method: c.req.method, reason, claimedToken: /^hsmca_([0-9a-f]{12})_/.exec(secret ?? "")?.[1] };
  const recorded = failures.failed(address, failure);
  ctx.log[recorded ? "warn" : "debug"]({ route: failure.route, reason }, "authentication failed");
  return undefined;
}

/** The TCP peer's address (a proxy's, behind one); "unknown" outside a Node server (app.request in tests). */
function clientAddress(c: Context): string {
  return (c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined)?.incoming?.socket?.remoteAddress ?? "unknown";
}

