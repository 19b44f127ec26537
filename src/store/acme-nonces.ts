import { and, eq, gt, lt } from "drizzle-orm";
import type { Database } from "./database.ts";
import { acmeNonces } from "./schema.ts";

export async function insertNonce(db: Database, value: string, expiresAt: Date): Promise<void> {
  await db.insert(acmeNonces).values({ value, expiresAt });
}

/** True exactly once per issued, unexpired nonce: the delete is the "use". */
export async function consumeNonce(db: Database, value: string, now: Date): Promise<boolean> {
  const rows = await db
    .delete(acmeNonces)
    .where(and(eq(acmeNonces.value, value), gt(acmeNonces.expiresAt, now)))
    .returning({ value: acmeNonces.value });
  return rows.length === 1;
}

export async function deleteExpiredNonces(db: Database, now: Date): Promise<number> {
  const rows = await db.delete(acmeNonces).where(lt(acmeNonces.expiresAt, now)).returning({ value: acmeNonces.value });
  return rows.length;
}
