import type { Logger } from "pino";
import type { Hsm } from "../hsm/hsm.ts";
import { listCas, markKeyDestroyed, type CaRow } from "../store/cas.ts";
import { insertCeremony } from "../store/ceremonies.ts";
import { lastExpiryOf } from "../store/certificates.ts";
import type { Database } from "../store/database.ts";
import { LOCKS, withAdvisoryLock } from "../store/locks.ts";
import { retireResponders } from "../store/ocsp.ts";

/**
 * A retired intermediate's key signs its CRLs and OCSP answers until the
 * last certificate it issued has expired; then it is destroyed on the HSM,
 * with its OCSP responders' keys, and the destruction is recorded. Never
 * earlier: an unexpired certificate keeps the key.
 */
export async function destroyRetiredKeys(deps: { db: Database; hsm: Hsm; log: Logger; now(): Date }): Promise<CaRow[]> {
  const destroyed: CaRow[] = [];
  await withAdvisoryLock(deps.db, LOCKS.hierarchy, async (tx) => {
    const now = deps.now();
    for (const ca of await listCas(tx)) {
      if (ca.role !== "intermediate" || ca.status === "active" || ca.keyDestroyedAt) continue;
      const last = await lastExpiryOf(tx, ca.id);
      if (last && last > now) continue;
      const responderLabels = await retireResponders(tx, ca.id);
      const keys = [ca.keyLabel, ...responderLabels].filter((label) => deps.hsm.destroyKey(label));
      await markKeyDestroyed(tx, ca.id, now);
      await insertCeremony(tx, "destroy-key", {
        ceremony: "destroy-key",
        at: now.toISOString(),
        ca: { id: ca.id, subject: ca.subject, keyLabel: ca.keyLabel, keyId: ca.keyId },
        lastCertificateExpired: last?.toISOString() ?? null,
        destroyedKeys: keys,
      });
      deps.log.info({ ca: ca.id, subject: ca.subject, keys }, "destroyed the keys of a retired intermediate: its last certificate has expired");
      destroyed.push(ca);
    }
  });
  return destroyed;
}
