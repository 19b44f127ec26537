import { and, asc, eq } from "drizzle-orm";
import type { Database } from "./database.ts";
import { cas } from "./schema.ts";

export type CaRow = typeof cas.$inferSelect;
export type NewCaRow = typeof cas.$inferInsert;

export async function insertCa(db: Database, row: NewCaRow): Promise<CaRow> {
  const [inserted] = await db.insert(cas).values(row).returning();
  return inserted!;
}

export async function listCas(db: Database): Promise<CaRow[]> {
  return db.select().from(cas).orderBy(asc(cas.id));
}

export async function activeCa(db: Database, role: CaRow["role"]): Promise<CaRow | undefined> {
  const [row] = await db
    .select()
    .from(cas)
    .where(and(eq(cas.role, role), eq(cas.status, "active")))
    .orderBy(asc(cas.id))
    .limit(1);
  return row;
}

export async function caById(db: Database, id: number): Promise<CaRow | undefined> {
  const [row] = await db.select().from(cas).where(eq(cas.id, id));
  return row;
}
