import { sql } from "drizzle-orm";
import type { Database } from "./database.ts";
import { hexArrayLiteral } from "./raw-sql.ts";
import { blockedKeys } from "./schema.ts";

export async function blockKey(db: Database, spkiSha256: string, reason: string, serial?: string): Promise<void> {
  await db.insert(blockedKeys).values({ spkiSha256, reason, serial: serial ?? null }).onConflictDoNothing();
}

/**
 * Whether a public key was revoked for key compromise. Every issuance asks
 * first; under load, the questions asked while one query is in flight go
 * together in the next (one statement for many requests, as the
 * certificate writer does for inserts). Always a fresh answer: nothing is cached.
 */
export function isKeyBlocked(db: Database, spkiSha256: string): Promise<boolean> {
  let batcher = batchers.get(db);
  if (!batcher) batchers.set(db, (batcher = new BlockedKeyLookup(db)));
  return batcher.ask(spkiSha256);
}

interface Question {
  spkiSha256: string;
  resolve(blocked: boolean): void;
  reject(err: unknown): void;
}

const MAX_BATCH = 500;
const MAX_IN_FLIGHT = 2;

class BlockedKeyLookup {
  private readonly queue: Question[] = [];
  private inFlight = 0;

  constructor(private readonly db: Database) {}

  ask(spkiSha256: string): Promise<boolean> {
    return new Promise((resolve, reject) => {
      this.queue.push({ spkiSha256, resolve, reject });
      if (this.inFlight < MAX_IN_FLIGHT) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.inFlight++;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_BATCH);
        try {
          const wanted = [...new Set(batch.map((q) => q.spkiSha256))];
          // One array parameter, not one per key: the same prepared statement whatever the batch size.
          const literal = hexArrayLiteral(wanted);
          const rows = await this.db
            .select({ k: blockedKeys.spkiSha256 })
            .from(blockedKeys)
            .where(sql`${blockedKeys.spkiSha256} = any(${literal}::text[])`);
          const blocked = new Set(rows.map((r) => r.k));
          for (const q of batch) q.resolve(blocked.has(q.spkiSha256));
        } catch (err) {
          for (const q of batch) q.reject(err);
        }
      }
    } finally {
      this.inFlight--;
    }
  }
}

const batchers = new WeakMap<Database, BlockedKeyLookup>();
