import cron from "node-cron";
import type { Logger } from "pino";
import { deleteExpiredNonces } from "../store/acme-nonces.ts";
import { expireAndPurge } from "../store/acme-orders.ts";
import type { Database } from "../store/database.ts";

/** Orders are kept this long after they expire, for clients and operators to look back. */
const RETENTION_MS = 30 * 86_400_000;

export async function cleanUpAcme(db: Database, now: Date): Promise<{ nonces: number; expired: number; purged: number }> {
  const nonces = await deleteExpiredNonces(db, now);
  const { expired, purged } = await expireAndPurge(db, now, RETENTION_MS);
  return { nonces, expired, purged };
}

/**
 * Every ten minutes: expired nonces go, pending orders and authorizations
 * past their expiry become invalid/expired, old orders are purged. Each
 * step is idempotent, so replicas running it at once do no harm.
 */
export function scheduleAcmeCleanup(db: Database, log: Logger): { stop(): void } {
  const task = cron.schedule("*/10 * * * *", async () => {
    try {
      const r = await cleanUpAcme(db, new Date());
      if (r.nonces || r.expired || r.purged) log.info(r, "ACME clean-up");
    } catch (err) {
      log.error({ err: (err as Error).message }, "ACME clean-up failed");
    }
  });
  return { stop: () => void task.stop() };
}
