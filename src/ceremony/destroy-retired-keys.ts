import type { Logger } from "pino";
import { ApprovalExecutionError, DEFAULT_APPROVAL_TTL_MS, DEFAULT_CA_CHANGE_APPROVALS, type ApprovalAudit } from "../approvals/context.ts";
import { createApprovalRequest } from "../approvals/requests.ts";
import type { KeyManager } from "../hsm/key-manager.ts";
import { requestsByPayloadField } from "../store/approvals.ts";
import { caById, listCas, markKeyDestroyed, type CaRow } from "../store/cas.ts";
import { insertCeremony } from "../store/ceremonies.ts";
import { lastExpiryOf } from "../store/certificates.ts";
import type { Database } from "../store/database.ts";
import { LOCKS, withAdvisoryLock } from "../store/locks.ts";
import { retireResponders } from "../store/ocsp.ts";

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
      if (required > 0) {
        await requestDestruction(tx, deps, ca, check.lastExpiry, required);
        continue;
      }
      await destroyKeysOf(tx, deps, ca, check.lastExpiry, now);
      destroyed.push(ca);
    }
  });
  return destroyed;
}

/**
 * An approved "destroy-key" request: under the hierarchy lock it checks
 * again that nothing still needs the key, then destroys it. Throws
 * ApprovalExecutionError (the request fails) when the key must stay.
 */
export async function destroyApprovedKey(
  deps: Pick<KeyCleanupDeps, "db" | "hsm" | "now"> & { log?: Logger },
  caId: number,
  requestId: string,
): Promise<{ ca: CaRow; keys: string[] }> {
  return withAdvisoryLock(deps.db, LOCKS.hierarchy, async (tx) => {
    const ca = await caById(tx, caId);
    if (!ca) throw new ApprovalExecutionError(`there is no CA ${caId}`);
    const now = deps.now();
    const check = await mayDestroy(tx, ca, now);
    if (!check.ok) throw new ApprovalExecutionError(`the key of ${ca.subject} stays: ${check.reason}`);
    const keys = await destroyKeysOf(tx, deps, ca, check.lastExpiry, now, requestId);
    return { ca, keys };
  });
}

type Check = { ok: true; lastExpiry: Date | undefined } | { ok: false; reason: string };

async function mayDestroy(tx: Database, ca: CaRow, now: Date): Promise<Check> {
  if (ca.role !== "intermediate") return { ok: false, reason: "it is a root CA" };
  if (ca.status === "active") return { ok: false, reason: "it is the active intermediate" };
  if (ca.keyDestroyedAt) return { ok: false, reason: `it was destroyed at ${ca.keyDestroyedAt.toISOString()}` };
  const last = await lastExpiryOf(tx, ca.id);
  if (last && last > now) return { ok: false, reason: `its last certificate is valid until ${last.toISOString()}` };
  return { ok: true, lastExpiry: last ?? undefined };
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

async function destroyKeysOf(
  tx: Database,
  deps: Pick<KeyCleanupDeps, "hsm"> & { log?: Logger },
  ca: CaRow,
  last: Date | undefined,
  now: Date,
  approvedRequest?: string,
): Promise<string[]> {
  const responderLabels = await retireResponders(tx, ca.id);
  const keys = [ca.keyLabel, ...responderLabels].filter((label) => deps.hsm.destroyKey(label));
  await markKeyDestroyed(tx, ca.id, now);
  await insertCeremony(tx, "destroy-key", {
    ceremony: "destroy-key",
    at: now.toISOString(),
    ca: { id: ca.id, subject: ca.subject, keyLabel: ca.keyLabel, keyId: ca.keyId },
    lastCertificateExpired: last?.toISOString() ?? null,
    destroyedKeys: keys,
    ...(approvedRequest ? { approvalRequest: approvedRequest } : {}),
  });
  deps.log?.info({ ca: ca.id, subject: ca.subject, keys }, "destroyed the keys of a retired intermediate: its last certificate has expired");
  return keys;
}
