import { withTimeout } from "../with-timeout.ts";
import { rotationDueAt } from "../policy/rotation-rule.ts";
import type { Config } from "../config.ts";
import type { KeyManagerStatus } from "../hsm/key-manager.ts";
import { countPendingApprovalRequests, type RequestKind } from "../store/approvals.ts";
import { auditEntriesPage, auditHead, lastAuditCheckpoint } from "../store/audit.ts";
import { listCas } from "../store/cas.ts";
import { waitingPendingCas } from "../store/pending-cas.ts";
import { crlFreshness } from "../store/crls.ts";
import type { Database } from "../store/database.ts";
import type { Metrics } from "./catalogue.ts";

/** Every kind, so that "none pending" is a 0 and not a missing series. */
const REQUEST_KINDS: RequestKind[] = ["issue", "rotate", "destroy-key"];

/** A scrape must answer even when the database does not. */
const DATABASE_TIMEOUT_MS = 2_000;

export interface ScrapeSources {
  hsm: Pick<KeyManagerStatus, "health" | "poolStats">;
  db: Database;
  queueLimit: number;
  rotation: { remaining?: Config["rotation"]["remaining"]; nextTick(): Date | undefined };
  now(): Date;
}

/**
 * Fills the state gauges when Prometheus scrapes: the HSM's health and
 * session pool (in memory, plus one cheap PKCS#11 probe, as /readyz does),
 * and a few small database reads done at once: the CA table, the keys
 * waiting for an external root's signature, one row per
 * CRL scope, pending approvals grouped by kind, the audit head and the
 * last checkpoint (and, before the first checkpoint, the first entry).
 * Nothing here scans certificates.
 */
export function readStateOnScrape(metrics: Metrics, sources: ScrapeSources): void {
  metrics.onScrape(async () => {
    const health = sources.hsm.health();
    metrics.hsmUp.set(health.ok ? 1 : 0);
    const pool = sources.hsm.poolStats;
    metrics.hsmSessions.set(pool.size);
    metrics.hsmSessionsInUse.set(pool.inUse);
    metrics.hsmQueueWaiting.set(pool.waiting);
    metrics.hsmQueueLimit.set(sources.queueLimit);

    const fromDatabase = [
      metrics.caInfo,
      metrics.caExpirySeconds,
      metrics.rotationNextSeconds,
      metrics.intermediateAwaitingSignatureSeconds,
      metrics.crlAgeSeconds,
      metrics.crlNextUpdateSeconds,
      metrics.approvalsPending,
      metrics.auditCheckpointAgeSeconds,
      metrics.auditEntriesSinceCheckpoint,
    ];
    // Reset first: a CA whose key was destroyed, or a kind with nothing pending, must not linger.
    for (const g of fromDatabase) g.reset();
    const now = sources.now().getTime();
    const secondsUntil = (d: Date) => (d.getTime() - now) / 1000;

    const tick = sources.rotation.nextTick();
    if (tick) metrics.rotationNextSeconds.set({ trigger: "schedule" }, secondsUntil(tick));

    let state;
    try {
      state = await withTimeout(
        Promise.all([
          listCas(sources.db),
          waitingPendingCas(sources.db),
          crlFreshness(sources.db),
          countPendingApprovalRequests(sources.db),
          auditHead(sources.db),
          // The first entry is needed only before the first checkpoint (seq 1, by primary key).
          lastAuditCheckpoint(sources.db).then(async (checkpoint) => ({
            checkpoint,
            firstEntry: checkpoint ? undefined : (await auditEntriesPage(sources.db, { afterSeq: 0, limit: 1 }))[0],
          })),
        ]),
        DATABASE_TIMEOUT_MS,
      );
    } catch {
      metrics.databaseUp.set(0);
      // Unlabelled gauges cannot be absent: NaN says "unknown", where 0 would say "just signed".
      metrics.auditCheckpointAgeSeconds.set(NaN);
      metrics.auditEntriesSinceCheckpoint.set(NaN);
      return;
    }
    metrics.databaseUp.set(1);
    const [cas, awaiting, crls, pending, head, { checkpoint, firstEntry }] = state;
    for (const p of awaiting) {
      metrics.intermediateAwaitingSignatureSeconds.set({ pending_id: String(p.id), subject: p.subject, reason: p.reason }, -secondsUntil(p.createdAt));
    }

    for (const ca of cas) {
      const id = String(ca.id);
      metrics.caInfo.set({ ca_id: id, role: ca.role, status: ca.status, subject: ca.subject, key_label: ca.keyLabel }, 1);
      if (!ca.keyDestroyedAt) metrics.caExpirySeconds.set({ ca_id: id, role: ca.role, status: ca.status }, secondsUntil(ca.notAfter));
      if (ca.role === "intermediate" && ca.status === "active" && sources.rotation.remaining) {
        metrics.rotationNextSeconds.set({ trigger: "remaining" }, secondsUntil(rotationDueAt(ca, sources.rotation.remaining)));
      }
    }
    for (const crl of crls) {
      const labels = { ca_id: String(crl.issuerId), kind: crl.kind };
      metrics.crlAgeSeconds.set(labels, -secondsUntil(crl.oldestThisUpdate));
      metrics.crlNextUpdateSeconds.set(labels, secondsUntil(crl.soonestNextUpdate));
    }
    for (const kind of REQUEST_KINDS) metrics.approvalsPending.set({ kind }, pending.find((p) => p.kind === kind)?.count ?? 0);
    // Never signed yet: the age of the oldest unsigned entry, so that "no checkpoint ever" also alerts.
    const since = checkpoint?.at ?? firstEntry?.at;
    metrics.auditCheckpointAgeSeconds.set(since ? -secondsUntil(since) : 0);
    metrics.auditEntriesSinceCheckpoint.set(head ? head.seq - (checkpoint?.seq ?? 0) : 0);
  });
}
