import type { Context } from "hono";
import type { Logger } from "pino";
import type { AuditLog } from "../audit/audit-log.ts";
import type { Principal } from "../auth/api-tokens.ts";
import type { ActiveIssuer } from "../issuance/issuer.ts";
import type { Metrics } from "../metrics/catalogue.ts";
import type { Profile } from "../policy/profile-schema.ts";
import type { RateLimits } from "../policy/rate-limit.ts";
import type { RevocationPublishing } from "../revocation/pointers.ts";
import type { Database } from "../store/database.ts";
import type { VaultSettings } from "../config.ts";

/**
 * What the Vault door uses. Built by the service, like the ACME server's
 * context: this folder does not reach into src/api; the REST API's token
 * authentication (with its failure counting) comes in as a function.
 */
export interface VaultContext {
  db: Database;
  profiles: ReadonlyMap<string, Profile>;
  issuer(): ActiveIssuer;
  revocation?: RevocationPublishing;
  audit?: AuditLog;
  metrics?: Metrics;
  rateLimits?: RateLimits;
  log: Logger;
  now(): Date;
  settings: VaultSettings;
  /** An hsm-ca API token's principal, counting a failure per client address as REST does (src/api/require-role.ts); may throw rate-limited. */
  authenticateApiToken(c: Context, secret: string | undefined, reason: string): Promise<Principal | undefined>;
  /** The HSM and the database usable, and not shutting down (what /readyz says). */
  ready(): Promise<{ ok: boolean; detail: string }>;
}

/** Hono variables of the Vault door. */
export interface VaultEnv {
  Variables: {
    principal: Principal;
    requestId: string;
  };
}
