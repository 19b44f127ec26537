import type { Logger } from "pino";
import type { Config } from "../config.ts";
import type { KeyManager } from "../hsm/key-manager.ts";
import type { Metrics } from "../metrics/catalogue.ts";
import type { Database } from "../store/database.ts";
import { CrlPublisher } from "./crl-publisher.ts";
import { OcspService } from "./ocsp-service.ts";
import type { RevocationPublishing } from "./pointers.ts";
import { RevocationWatcher, type RevocationEvent } from "./revocation-watcher.ts";

export interface RevocationServices {
  publishing: RevocationPublishing;
  crls: CrlPublisher;
  ocsp: OcspService;
  watcher: RevocationWatcher;
  /** This replica became the leader: it republishes the CRLs of revocations it saw while it was not. */
  tookLead(): void;
  stop(): Promise<void>;
}

/** OCSP responses kept in memory (about 1 KiB each with a delegated responder's certificate). */
const OCSP_CACHE_ENTRIES = 200_000;
/**
 * A follower remembers the issuers of revocations it saw this long: if it
 * becomes the leader meanwhile, the old leader may have died before it
 * republished their CRLs.
 */
const FOLLOWER_MEMORY_MS = 120_000;

/**
 * CRLs and OCSP, made together; their schedules are jobs (src/jobs:
 * crl-publishing, ocsp-presigning, ocsp-responders, revocation-watch).
 * A revocation, which the watcher sees in the database within a second,
 * evicts this process's cached OCSP answers, reloads the hierarchy when a
 * CA was revoked, and has the leader republish the CRLs concerned.
 */
export async function startRevocationServices(deps: {
  config: Config;
  db: Database;
  hsm: KeyManager;
  log: Logger;
  publishing: RevocationPublishing;
  /** A CA was revoked (possibly by another process): the issuer must be reloaded. */
  caRevoked(): Promise<void>;
  /** Whether this replica leads the background jobs (CRLs are published by the leader). */
  leading(): boolean;
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
      hsmShare: config.revocation.ocspHsmShare,
      cacheEntries: OCSP_CACHE_ENTRIES,
    },
  );
  await ocsp.load();
  const seenAsFollower = new Map<number, number>();
  const republish = (events: RevocationEvent[]) => {
    const issuers = new Set(events.map((e) => e.crlIssuerId));
    if (deps.leading()) return issuers.forEach((id) => crls.revoked(id));
    const t = Date.now();
    for (const id of issuers) seenAsFollower.set(id, t);
    for (const [id, at] of seenAsFollower) if (t - at > FOLLOWER_MEMORY_MS) seenAsFollower.delete(id);
  };
  const watcher = new RevocationWatcher({
    db,
    now,
    onRevoked: [
      (events) => ocsp.evict(events.map((e) => e.serial)),
      republish,
      (events) => {
        if (events.some((e) => e.ca)) deps.caRevoked().catch((err: Error) => log.error({ err: err.message }, "cannot reload the CA hierarchy"));
      },
    ],
  });
  return {
    publishing,
    crls,
    ocsp,
    watcher,
    tookLead: () => {
      const since = Date.now() - FOLLOWER_MEMORY_MS;
      for (const [id, at] of seenAsFollower) if (at >= since) crls.revoked(id);
      seenAsFollower.clear();
    },
    stop: async () => {
      await ocsp.stop();
      await crls.drain();
    },
  };
}
