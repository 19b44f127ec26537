import { createMiddleware } from "hono/factory";
import { withActor } from "../audit/actor.ts";
import { authenticate, type Principal } from "../auth/api-tokens.ts";
import type { AppContext, AppEnv } from "./context.ts";
import { problem } from "./problem.ts";
import { limitTokenRate } from "./rate-limit.ts";

/**
 * Bearer token authentication, then a role check. 401 for no or a bad
 * token, 403 for a token whose role may not use the route.
 */
export function requireRole(ctx: AppContext, allowed: (p: Principal) => boolean) {
  return createMiddleware<AppEnv>(async (c, next) => {
    const header = c.req.header("authorization") ?? "";
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    const principal = await authenticate(ctx.store.db, m?.[1]);
    if (!principal) {
      ctx.log.warn({ route: c.req.path, reason: m ? "unknown token" : "no bearer token" }, "authentication failed");
      // The id part of something shaped like a token is public; the rest never goes anywhere.
      const claimed = /^hsmca_([0-9a-f]{12})_/.exec(m?.[1] ?? "")?.[1];
      ctx.audit?.record({
        kind: "auth.failure",
        actor: "anonymous",
        result: "error",
        details: { route: c.req.path, method: c.req.method, reason: m ? "unknown token" : "no bearer token", claimed_token: claimed },
      });
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
