import type { AuditLog } from "../audit/audit-log.ts";
import type { Config } from "../config.ts";
import type { Metrics } from "../metrics/catalogue.ts";
import type { KeyManager, SecretSealer, TokenDataObjects } from "../hsm/key-manager.ts";
import type { RevocationUrls } from "../revocation/urls.ts";
import type { Store } from "../store/database.ts";

/**
 * What a CLI command runs against. In a standalone CLI process it opens the
 * database and HSM itself; inside the running service (reached over the
 * control socket) it borrows the service's own.
 */
export interface CommandEnv {
  config: Config;
  store(): Promise<Store>;
  /** The HSM's keys (the standalone CLI opens the HSM on first use), its sealing key and data objects. */
  hsm(): KeyManager & SecretSealer & TokenDataObjects;
  out(text: string): void;
  err(text: string): void;
  /** The base of the CRL/OCSP/caIssuers URLs written into new CA certificates. */
  revocationUrls(): RevocationUrls;
  /** Tells a running service that the CA hierarchy changed. */
  hierarchyChanged(): Promise<void>;
  /** Where admin actions are recorded (actor "cli"); unset: not recorded. */
  audit?: AuditLog;
  /** Inside the service (control socket): its Prometheus metrics, which count revocations; unset: nothing counted. */
  metrics?: Metrics;
}

/** A refusal the CLI prints as one line and exits non-zero on. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
  }
}
