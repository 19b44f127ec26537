import { and, eq, isNull, like, notLike } from "drizzle-orm";
import type { Database } from "./database.ts";
import { acmeEabKeys } from "./schema.ts";

export type EabKeyRow = typeof acmeEabKeys.$inferSelect;

export async function insertEabKey(db: Database, row: typeof acmeEabKeys.$inferInsert): Promise<EabKeyRow> {
  const [inserted] = await db.insert(acmeEabKeys).values(row).returning();
  return inserted!;
}

/** An EAB key by its identifier, whichever directory it is for and whether or not it has bound an account. */
export async function eabKeyByKid(db: Database, kid: string): Promise<EabKeyRow | undefined> {
  const [row] = await db.select().from(acmeEabKeys).where(eq(acmeEabKeys.kid, kid));
  return row;
}

/** Binds the key to the account; false when another account took it first. */
export async function bindEabKey(db: Database, kid: string, accountId: string, now: Date): Promise<boolean> {
  const rows = await db
    .update(acmeEabKeys)
    .set({ accountId, boundAt: now })
    .where(and(eq(acmeEabKeys.kid, kid), isNull(acmeEabKeys.accountId)))
    .returning({ kid: acmeEabKeys.kid });
  return rows.length === 1;
}

/** Keys whose stored HMAC key starts with `prefix` (the sealed format's). */
export async function eabKeysStartingWith(db: Database, prefix: string): Promise<EabKeyRow[]> {
  return db.select().from(acmeEabKeys).where(like(acmeEabKeys.hmacKey, `${prefix}%`));
}

/** Keys whose stored HMAC key does not start with `prefix` (the sealed format's): rows from before it. */
export async function eabKeysNotStartingWith(db: Database, prefix: string): Promise<EabKeyRow[]> {
  return db.select().from(acmeEabKeys).where(notLike(acmeEabKeys.hmacKey, `${prefix}%`));
}

/** Replaces a key's stored HMAC key, only if it still holds `from`; false when it did not. */
export async function replaceEabHmacKey(db: Database, kid: string, from: string, to: string): Promise<boolean> {
  const rows = await db
    .update(acmeEabKeys)
    .set({ hmacKey: to })
    .where(and(eq(acmeEabKeys.kid, kid), eq(acmeEabKeys.hmacKey, from)))
    .returning({ kid: acmeEabKeys.kid });
  return rows.length === 1;
}
