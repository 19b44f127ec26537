import { and, asc, eq, isNull } from "drizzle-orm";
import type { Database } from "./database.ts";
import { pendingCas } from "./schema.ts";

export type PendingCaRow = typeof pendingCas.$inferSelect;
export type NewPendingCaRow = typeof pendingCas.$inferInsert;

export async function insertPendingCa(db: Database, row: NewPendingCaRow): Promise<PendingCaRow> {
  const [inserted] = await db.insert(pendingCas).values(row).returning();
  return inserted!;
}

/** Keys whose certificate has not come back yet, oldest first (normally at most one). */
export async function waitingPendingCas(db: Database): Promise<PendingCaRow[]> {
  return db.select().from(pendingCas).where(isNull(pendingCas.completedAt)).orderBy(asc(pendingCas.id));
}

/** Marks it done; false when it was completed already (by another import meanwhile). */
export async function completePendingCa(db: Database, id: number, caId: number, at: Date): Promise<boolean> {
  const rows = await db
    .update(pendingCas)
    .set({ completedCaId: caId, completedAt: at })
    .where(and(eq(pendingCas.id, id), isNull(pendingCas.completedAt)))
    .returning({ id: pendingCas.id });
  return rows.length === 1;
}
