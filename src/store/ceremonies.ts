import { desc } from "drizzle-orm";
import type { Database } from "./database.ts";
import { ceremonies } from "./schema.ts";

export type CeremonyRow = typeof ceremonies.$inferSelect;

export async function insertCeremony(db: Database, kind: string, transcript: unknown): Promise<CeremonyRow> {
  const [row] = await db.insert(ceremonies).values({ kind, transcript }).returning();
  return row!;
}

export async function listCeremonies(db: Database): Promise<CeremonyRow[]> {
  return db.select().from(ceremonies).orderBy(desc(ceremonies.id));
}
