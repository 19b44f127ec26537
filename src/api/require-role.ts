import { createMiddleware } from "hono/factory";
import { authenticate, type Principal } from "../auth/api-tokens.ts";
import type { AppContext, AppEnv } from "./context.ts";
import { problem } from "./problem.ts";

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
      c.header("www-authenticate", 'Bearer realm="hsm-ca"');
      return problem(c, "unauthorized", m ? "the API token is not valid" : "send an API token as 'Authorization: Bearer <token>'");
    }
    if (!allowed(principal)) {
      return problem(c, "forbidden", `an ${principal.role} token may not ${c.req.method} ${c.req.path}`);
    }
    c.set("principal", principal);
    await next();
  });
}
