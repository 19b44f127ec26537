import type { Logger } from "pino";
import { deleteExpiredNonces } from "../store/acme-nonces.ts";
import { expireAndPurge } from "../store/acme-orders.ts";
import type { Database } from "../store/database.ts";
import type { Job } from "./job.ts";

/** Orders are kept this long after they expire, for clients and operators to look back. */
const RETENTION_MS = 30 * 86_400_000;

export async function cleanUpAcme(db: Database, now: Date): Promise<{ nonces: number; expired: number; purged: number }> {
  const nonces = await deleteExpiredNonces(db, now);
  const { expired, purged } = await expireAndPurge(db, now, RETENTION_MS);
  return { nonces, expired, purged };
}

/**
 * Every ten minutes, on the leader: expired nonces go, pending orders and
 * authorizations past their expiry become invalid/expired, old orders are
 * purged. Each step is idempotent, so a second replica running it during a
 * change of leader does no harm.
 */
export function acmeCleanupJob(db: Database, log: Logger): Job {
  return {
    name: "acme-cleanup",
    runsOn: "leader",
    schedule: { cron: "*/10 * * * *" },
    failure: "ACME clean-up failed",
    run: async () => {
      const r = await cleanUpAcme(db, new Date());
      if (r.nonces || r.expired || r.purged) log.info(r, "ACME clean-up");
    },
  };
}
