import { sql } from "drizzle-orm";
import type { Database } from "./database.ts";

/** Names of PostgreSQL advisory locks, so that replicas take turns. */
export const LOCKS = {
  hierarchy: 0x68736d01,
  /** Appending to the audit log's hash chain, and its checkpoints. */
  audit: 0x68736d61,
  /** Sealing EAB HMAC keys: the first seal makes the HSM's wrapping key, and only one replica may. */
  eabSealing: 0x68736d65,
  /** The background jobs' leader: held for as long as the leading replica's lease connection lives (session-lock.ts). */
  jobsLeader: 0x68736d6c,
} as const;
// Rotation takes the hierarchy lock too: it changes the hierarchy.

/** Runs fn in a transaction that holds the advisory lock until it ends. */
export async function withAdvisoryLock<T>(db: Database, lock: number, fn: (tx: Database) => Promise<T>): Promise<T> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${lock})`);
    return fn(tx as unknown as Database);
  });
}
