import cron from "node-cron";
import type { Logger } from "pino";
import type { Config } from "../config.ts";
import type { KeyManager } from "../hsm/key-manager.ts";
import type { Metrics } from "../metrics/catalogue.ts";
import type { Database } from "../store/database.ts";
import { CrlPublisher } from "./crl-publisher.ts";
import { OcspService } from "./ocsp-service.ts";
import type { RevocationPublishing } from "./pointers.ts";
import { RevocationWatcher } from "./revocation-watcher.ts";

export interface RevocationServices {
  publishing: RevocationPublishing;
  crls: CrlPublisher;
  ocsp: OcspService;
  watcher: RevocationWatcher;
  stop(): Promise<void>;
}

/** OCSP responses kept in memory (about 1 KiB each with a delegated responder's certificate). */
const OCSP_CACHE_ENTRIES = 200_000;

/**
 * CRLs and OCSP, started together: published once at start, then on a
 * schedule (node-cron, every minute: whatever is past half its life), and
 * within seconds of any revocation, which the watcher sees in the database.
 */
export async function startRevocationServices(deps: {
  config: Config;
  db: Database;
  hsm: KeyManager;
  log: Logger;
  publishing: RevocationPublishing;
  /** A CA was revoked (possibly by another process): the issuer must be reloaded. */
  caRevoked(): Promise<void>;
  /** Counts OCSP answers and cache hits; unset: nothing counted. */
  metrics?: Metrics;
}): Promise<RevocationServices> {
  const { config, db, hsm, log, publishing } = deps;
  const now = () => new Date();
  const crls = new CrlPublisher({
    db,
    hsm,
    log,
    now,
    urls: () => publishing.urls,
    settings: {
      partitions: publishing.partitions,
      fullLifetimeMs: config.revocation.crlLifetimeMs,
      deltaLifetimeMs: config.revocation.crlDeltaLifetimeMs,
    },
  });
  const ocsp = new OcspService(
    { db, hsm, log, now, metrics: deps.metrics },
    {
      mode: config.revocation.ocspSigner,
      responseLifetimeMs: config.revocation.ocspResponseLifetimeMs,
      responderLifetimeMs: config.revocation.ocspResponderLifetimeMs,
      signRate: config.revocation.ocspSignRate,
      cacheEntries: OCSP_CACHE_ENTRIES,
    },
  );
  await ocsp.load();
  await crls.publishDue();
  const watcher = new RevocationWatcher({
    db,
    log,
    now,
    onRevoked: [
      (events) => ocsp.evict(events.map((e) => e.serial)),
      (events) => new Set(events.map((e) => e.crlIssuerId)).forEach((id) => crls.revoked(id)),
      (events) => {
        if (events.some((e) => e.ca)) deps.caRevoked().catch((err: Error) => log.error({ err: err.message }, "cannot reload the CA hierarchy"));
      },
    ],
  });
  watcher.start();
  ocsp.start();
  const schedule = cron.schedule("* * * * *", () => crls.publishDue().catch((err: Error) => log.error({ err: err.message }, "scheduled CRL publication failed")));
  return {
    publishing,
    crls,
    ocsp,
    watcher,
    stop: async () => {
      void schedule.stop();
      watcher.stop();
      await ocsp.stop();
      await crls.drain();
    },
  };
}
