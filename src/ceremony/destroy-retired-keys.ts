import type { Logger } from "pino";
import type { KeyManager } from "../hsm/key-manager.ts";
import { caById, markKeyDestroyed, type CaRow } from "../store/cas.ts";
import { insertCeremony } from "../store/ceremonies.ts";
import { lastExpiryOf } from "../store/certificates.ts";
import type { Database } from "../store/database.ts";
import { LOCKS, withAdvisoryLock } from "../store/locks.ts";
import { retireResponders } from "../store/ocsp.ts";

/** The key must stay (it still signs, or is gone already): the approved destruction fails with this reason. */
export class KeyMustStayError extends Error {}

/**
 * An approved "destroy-key" request: under the hierarchy lock it checks
 * again that nothing still needs the key, then destroys it. Throws
 * KeyMustStayError (the request fails) when the key must stay.
 */
export async function destroyApprovedKey(
  deps: { db: Database; hsm: KeyManager; now(): Date; log?: Logger },
  caId: number,
  requestId: string,
): Promise<{ ca: CaRow; keys: string[] }> {
  return withAdvisoryLock(deps.db, LOCKS.hierarchy, async (tx) => {
    const ca = await caById(tx, caId);
    if (!ca) throw new KeyMustStayError(`there is no CA ${caId}`);
    const now = deps.now();
    const check = await mayDestroy(tx, ca, now);
    if (!check.ok) throw new KeyMustStayError(`the key of ${ca.subject} stays: ${check.reason}`);
    const keys = await destroyKeysOf(tx, deps, ca, check.lastExpiry, now, requestId);
    return { ca, keys };
  });
}

export type DestroyCheck = { ok: true; lastExpiry: Date | undefined } | { ok: false; reason: string };

export async function mayDestroy(tx: Database, ca: CaRow, now: Date): Promise<DestroyCheck> {
  if (ca.role !== "intermediate") return { ok: false, reason: "it is a root CA" };
  if (ca.keyOrigin === "external") return { ok: false, reason: "its key is an external CA's, not on this HSM" };
  if (ca.status === "active") return { ok: false, reason: "it is the active intermediate" };
  if (ca.keyDestroyedAt) return { ok: false, reason: `it was destroyed at ${ca.keyDestroyedAt.toISOString()}` };
  const last = await lastExpiryOf(tx, ca.id);
  if (last && last > now) return { ok: false, reason: `its last certificate is valid until ${last.toISOString()}` };
  return { ok: true, lastExpiry: last ?? undefined };
}

export async function destroyKeysOf(
  tx: Database,
  deps: { hsm: KeyManager; log?: Logger },
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
