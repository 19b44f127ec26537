import type { Logger } from "pino";
import type { AuditLog } from "../audit/audit-log.ts";
import type { ActiveIssuer } from "../issuance/issuer.ts";
import type { RevocationPublishing } from "../revocation/pointers.ts";
import type { AcmeProfile } from "../policy/acme-profile-schema.ts";
import type { Profile } from "../policy/profile-schema.ts";
import type { Database } from "../store/database.ts";
import type { RateLimits } from "../policy/rate-limit.ts";
import type { Metrics } from "../metrics/catalogue.ts";
import type { EabSealer } from "./eab-keys.ts";
import type { ValidationConfig } from "./validation/types.ts";

/** One ACME directory: its policy, the certificate profile it issues from, where it lives. */
export interface AcmeDirectory {
  profile: AcmeProfile;
  certificateProfile: Profile;
  /** "/acme" for the default directory, "/acme/<name>" for the others. */
  basePath: string;
}

export interface AcmeContext {
  db: Database;
  directories: ReadonlyMap<string, AcmeDirectory>;
  profiles: ReadonlyMap<string, Profile>;
  issuer(): ActiveIssuer;
  /** CRL and OCSP pointers for issued certificates. */
  revocation?: RevocationPublishing;
  validation: ValidationConfig;
  /** Opens the EAB HMAC keys sealed in the database (the HSM's wrapping key). */
  eabSealer: EabSealer;
  /** Fixed origin for the URLs handed out; else each request's own. */
  publicUrl?: string;
  log: Logger;
  now(): Date;
  /** The audit log (issuance and revocation over ACME); unset: nothing recorded. */
  audit?: AuditLog;
  /** Request rate limits (src/policy/rate-limit.ts); unset: built from the environment's settings. */
  rateLimits?: RateLimits;
  /** The service's Prometheus metrics (issuance, revocation); unset: nothing counted. */
  metrics?: Metrics;
}

/** The default directory is served at /acme/directory; with several, "default" or the first by name. */
export function directoryPaths(profiles: ReadonlyMap<string, AcmeProfile>): Map<string, string> {
  const names = [...profiles.keys()].sort();
  const primary = profiles.has("default") ? "default" : names[0];
  return new Map(names.map((n) => [n, n === primary ? "/acme" : `/acme/${n}`]));
}
