import { and, eq } from "drizzle-orm";
import type { Database } from "./database.ts";
import { acmeAccounts } from "./schema.ts";

export type AcmeAccountRow = typeof acmeAccounts.$inferSelect;

export async function insertAccount(db: Database, row: typeof acmeAccounts.$inferInsert): Promise<AcmeAccountRow> {
  const [inserted] = await db.insert(acmeAccounts).values(row).returning();
  return inserted!;
}

export async function accountById(db: Database, id: string): Promise<AcmeAccountRow | undefined> {
  const [row] = await db.select().from(acmeAccounts).where(eq(acmeAccounts.id, id));
  return row;
}

export async function accountByThumbprint(db: Database, directory: string, thumbprint: string): Promise<AcmeAccountRow | undefined> {
  const [row] = await db
    .select()
    .from(acmeAccounts)
    .where(and(eq(acmeAccounts.directory, directory), eq(acmeAccounts.keyThumbprint, thumbprint)));
  return row;
}

export async function updateAccount(
  db: Database,
  id: string,
  changes: Partial<Pick<AcmeAccountRow, "contact" | "status" | "jwk" | "keyThumbprint">>,
): Promise<AcmeAccountRow> {
  const [row] = await db.update(acmeAccounts).set(changes).where(eq(acmeAccounts.id, id)).returning();
  return row!;
}
