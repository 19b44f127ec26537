import type { Logger } from "pino";
import type { AuditLog } from "../audit/audit-log.ts";
import type { Principal } from "../auth/api-tokens.ts";
import type { Config } from "../config.ts";
import type { KeyManagerStatus } from "../hsm/key-manager.ts";
import type { ActiveIssuer } from "../issuance/issuer.ts";
import type { Metrics } from "../metrics/catalogue.ts";
import type { Profile } from "../policy/profile-schema.ts";
import type { OcspService } from "../revocation/ocsp-service.ts";
import type { Store } from "../store/database.ts";
import type { AuthFailures } from "./auth-failures.ts";
import type { RateLimits } from "../policy/rate-limit.ts";

/**
 * What the HTTP layer may use. Built once by the service. No key manager:
 * the HTTP layer reads the HSM's status, and signs only through the
 * issuer (issuance) and the OCSP responder.
 */
export interface AppContext {
  store: Store;
  /** The HSM's health, session pool and key provenance, read-only. */
  keyStatus: KeyManagerStatus;
  profiles: ReadonlyMap<string, Profile>;
  issuer(): ActiveIssuer;
  /** The OCSP responder, once started. */
  ocsp(): OcspService | undefined;
  log: Logger;
  /** The audit log (auth failures, issuance, revocation); unset: nothing recorded. */
  audit?: AuditLog;
  /** Authentication failures per client address (src/api/auth-failures.ts). */
  authFailures: AuthFailures;
  /** Request rate limits (src/policy/rate-limit.ts); unset: built from the environment's settings. */
  rateLimits?: RateLimits;
  /** HSM_CA_APPROVAL_TTL and HSM_CA_CA_CHANGE_APPROVALS (config.approvals); unset: the defaults (24 h, 2). */
  approvals?: Config["approvals"];
  /** The service's Prometheus metrics; unset: nothing counted. */
  metrics?: Metrics;
  /** Told when an approval made a CA change approved: the service carries it out now rather than at its job's next tick. Unset: at the next tick. */
  caChangeApproved?(): void;
  /** True once shutdown has begun (SIGTERM): /readyz answers 503. Unset: never. */
  stopping?(): boolean;
}

/** Hono variables set by middleware. */
export interface AppEnv {
  Variables: {
    principal: Principal;
    /** The request's id (src/api/request-log.ts). */
    requestId: string;
    /** The ACME account that signed the request, once its signature is verified (for the request log). */
    acmeAccount: string;
  };
}
