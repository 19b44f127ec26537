import type { Logger } from "pino";
import { DEFAULT_APPROVAL_TTL_MS, DEFAULT_CA_CHANGE_APPROVALS, type ApprovalAudit } from "../approvals/context.ts";
import { createApprovalRequest } from "../approvals/requests.ts";
import { destroyKeysOf, mayDestroy } from "../ceremony/destroy-retired-keys.ts";
import type { KeyManager } from "../hsm/key-manager.ts";
import { requestsByPayloadField } from "../store/approvals.ts";
import { listCas, type CaRow } from "../store/cas.ts";
import type { Database } from "../store/database.ts";
import { LOCKS, withAdvisoryLock } from "../store/locks.ts";
import type { Job } from "./job.ts";

export interface KeyCleanupDeps {
  db: Database;
  hsm: KeyManager;
  log: Logger;
  now(): Date;
  /**
   * The M-of-N gate (HSM_CA_CA_CHANGE_APPROVALS): with required > 0 a key
   * that may go is not destroyed but gets a "destroy-key" approval request
   * (one per CA), and is destroyed when that is approved. Absent: the
   * default gate (2 admins, requests open 24 h). `{ required: 0 }`: no gate.
   */
  approvals?: { required: number; ttlMs?: number };
  audit?: ApprovalAudit;
}

/** Who asks for a destruction: the hourly clean-up job. */
export const KEY_CLEANUP_ACTOR = "system:key-cleanup";

/**
 * A retired intermediate's key signs its CRLs and OCSP answers until the
 * last certificate it issued has expired; then it is destroyed on the HSM,
 * with its OCSP responders' keys, and the destruction is recorded. Never
 * earlier: an unexpired certificate keeps the key. Returns the CAs whose
 * keys were destroyed now (none with the approval gate: see `approvals`).
 */
export async function destroyRetiredKeys(deps: KeyCleanupDeps): Promise<CaRow[]> {
  const required = deps.approvals?.required ?? DEFAULT_CA_CHANGE_APPROVALS;
  const destroyed: CaRow[] = [];
  await withAdvisoryLock(deps.db, LOCKS.hierarchy, async (tx) => {
    const now = deps.now();
    for (const ca of await listCas(tx)) {
      const check = await mayDestroy(tx, ca, now);
      if (!check.ok) continue;
      // A key adopted from a vendor ceremony was not ours to make: someone approves its end, whatever the setting.
      const needed = ca.keyOrigin === "adopted" ? Math.max(required, 1) : required;
      if (needed > 0) {
        await requestDestruction(tx, deps, ca, check.lastExpiry, needed);
        continue;
      }
      await destroyKeysOf(tx, deps, ca, check.lastExpiry, now);
      destroyed.push(ca);
    }
  });
  return destroyed;
}

/** Once per CA: not while a request for it is open, done, or was rejected; again after one expired or failed. */
async function requestDestruction(tx: Database, deps: KeyCleanupDeps, ca: CaRow, lastExpiry: Date | undefined, required: number): Promise<void> {
  const existing = await requestsByPayloadField(tx, "destroy-key", "caId", String(ca.id), ["pending", "approved", "done", "rejected"]);
  if (existing.length) return;
  const { request } = await createApprovalRequest(
    { db: tx, now: deps.now, audit: deps.audit },
    {
      kind: "destroy-key",
      requestedBy: KEY_CLEANUP_ACTOR,
      required,
      ttlMs: deps.approvals?.ttlMs ?? DEFAULT_APPROVAL_TTL_MS,
      payload: {
        caId: String(ca.id),
        subject: ca.subject,
        keyLabel: ca.keyLabel,
        keyId: ca.keyId,
        lastCertificateExpired: lastExpiry?.toISOString() ?? null,
      },
    },
  );
  deps.log.info({ ca: ca.id, subject: ca.subject, request: request.id, required }, "the key of a retired intermediate may be destroyed: waiting for approval");
}


/**
 * Hourly (at minute 17), on the leader: destroys the keys of retired
 * intermediates whose last certificate has expired, or asks for approval
 * to (HSM_CA_CA_CHANGE_APPROVALS). The destruction itself runs under the
 * hierarchy lock, so a second replica finds nothing left to do.
 */
export function keyCleanupJob(deps: Omit<KeyCleanupDeps, "now">): Job {
  return {
    name: "key-cleanup",
    runsOn: "leader",
    schedule: { cron: "17 * * * *" },
    actor: KEY_CLEANUP_ACTOR,
    failure: "retired key clean-up failed",
    run: async () => {
      await destroyRetiredKeys({ ...deps, now: () => new Date() });
    },
  };
}
