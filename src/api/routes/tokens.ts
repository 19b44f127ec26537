import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { listApiTokens, revokeApiToken, type ApiTokenInfo } from "../../auth/api-tokens.ts";
import type { AppContext, AppEnv } from "../context.ts";
import { problem } from "../problem.ts";
import { requireRole } from "../require-role.ts";

/**
 * /api/v1/tokens: admins list API tokens (never a secret or its hash) and
 * revoke them by id, like `hsm-ca token list` and `hsm-ca token revoke`.
 * Tokens are still made with `hsm-ca token create` only: a new secret is
 * never sent over the API.
 */
export function tokenRoutes(ctx: AppContext) {
  const app = new Hono<AppEnv>();
  const adminOnly = requireRole(ctx, (p) => p.role === "admin");

  app.get("/", adminOnly, async (c) => {
    return c.json({ items: (await listApiTokens(ctx.store.db)).map(tokenView) });
  });

  app.post("/:id/revoke", bodyLimit({ maxSize: 4096, onError: (c) => problem(c, "payload-too-large", "send at most 4096 bytes") }), adminOnly, async (c) => {
    const principal = c.get("principal");
    const { token, alreadyRevoked } = await revokeApiToken({ db: ctx.store.db, now: () => new Date(), audit: ctx.audit }, c.req.param("id"), `token:${principal.tokenId}`);
    ctx.log.info({ revokedToken: token.id, tokenId: principal.tokenId, alreadyRevoked }, "API token revoked");
    return c.json({ ...tokenView(token), alreadyRevoked });
  });

  return app;
}

function tokenView(t: ApiTokenInfo) {
  return {
    id: t.id,
    role: t.role,
    profiles: t.profiles,
    description: t.description,
    createdAt: t.createdAt.toISOString(),
    revokedAt: t.revokedAt?.toISOString() ?? null,
  };
}
