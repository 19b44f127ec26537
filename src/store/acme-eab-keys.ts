import { and, eq, isNull } from "drizzle-orm";
import type { Database } from "./database.ts";
import { acmeEabKeys } from "./schema.ts";

export type EabKeyRow = typeof acmeEabKeys.$inferSelect;

export async function insertEabKey(db: Database, row: typeof acmeEabKeys.$inferInsert): Promise<EabKeyRow> {
  const [inserted] = await db.insert(acmeEabKeys).values(row).returning();
  return inserted!;
}

/** An EAB key of this directory that has not bound an account yet. */
export async function unboundEabKey(db: Database, directory: string, kid: string): Promise<EabKeyRow | undefined> {
  const [row] = await db
    .select()
    .from(acmeEabKeys)
    .where(and(eq(acmeEabKeys.kid, kid), eq(acmeEabKeys.directory, directory), isNull(acmeEabKeys.accountId)));
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
