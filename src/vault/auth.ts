import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { actorFor, withActor } from "../audit/actor.ts";
import type { Principal } from "../auth/api-tokens.ts";
import { limitTokenRate } from "../policy/rate-limit.ts";
import { authenticateClientToken, isClientToken } from "./approles.ts";
import type { VaultContext, VaultEnv } from "./context.ts";
import { VaultError } from "./errors.ts";

/** The token a Vault client sends: X-Vault-Token (every Vault client), or Authorization: Bearer (Vault accepts it too). */
export function tokenOf(c: Context): string | undefined {
  const vault = c.req.header("x-vault-token")?.trim();
  if (vault) return vault;
  return /^Bearer\s+(\S+)$/i.exec(c.req.header("authorization") ?? "")?.[1];
}

/**
 * The REST API's authentication and role check in Vault's words: an hsm-ca
 * API token (its role and profiles as REST applies them) or a client token
 * from an AppRole login. A missing or bad token, or one whose role may not
 * use the path, is 403 "permission denied", as Vault says it. Then the
 * token's rate limit, and the rest runs as the token.
 */
export function requireVaultToken(ctx: VaultContext, allowed: (p: Principal) => boolean) {
  return createMiddleware<VaultEnv>(async (c, next) => {
    const secret = tokenOf(c);
    let principal: Principal | undefined;
    if (isClientToken(secret)) {
      principal = (await authenticateClientToken(ctx.db, secret!, ctx.now())) ?? (await ctx.authenticateApiToken(c, secret, "expired or unknown Vault client token"));
    } else {
      principal = await ctx.authenticateApiToken(c, secret, secret ? "unknown token" : "no token");
    }
    if (!principal) {
      throw new VaultError(403, secret ? "permission denied: the token is not valid (expired, revoked or unknown)" : "permission denied: send an hsm-ca API token or an AppRole client token in X-Vault-Token");
    }
    if (!allowed(principal)) {
      ctx.audit?.record({
        kind: "auth.failure",
        actor: actorFor(principal.tokenId),
        result: "error",
        details: { route: c.req.path, method: c.req.method, reason: `role ${principal.role} may not use this route` },
      });
      throw new VaultError(403, `permission denied: an ${principal.role} token may not ${c.req.method} ${c.req.path}`);
    }
    c.set("principal", principal);
    limitTokenRate(ctx, principal.tokenId);
    await withActor(actorFor(principal.tokenId), () => next());
  });
}

export const issuerOrAdmin = (p: Principal) => p.role === "admin" || p.role === "issuer";
export const anyRole = (p: Principal) => p.role === "admin" || p.role === "auditor" || p.role === "issuer";
export const adminOnly = (p: Principal) => p.role === "admin";
