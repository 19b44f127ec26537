import { and, eq, sql } from "drizzle-orm";
import type { Database } from "./database.ts";
import { crlNumbers, crls } from "./schema.ts";

export type CrlRow = typeof crls.$inferSelect;

/** The issuer's next CRL number; atomic, so replicas never reuse one. */
export async function nextCrlNumber(db: Database, issuerId: number): Promise<bigint> {
  const [row] = await db
    .insert(crlNumbers)
    .values({ issuerId, last: 1n })
    .onConflictDoUpdate({ target: crlNumbers.issuerId, set: { last: sql`${crlNumbers.last} + 1` } })
    .returning({ last: crlNumbers.last });
  return BigInt(row!.last);
}

export async function saveCrl(db: Database, row: CrlRow): Promise<void> {
  await db
    .insert(crls)
    .values(row)
    .onConflictDoUpdate({ target: [crls.issuerId, crls.partition, crls.kind], set: row });
}

export async function latestCrl(db: Database, issuerId: number, partition: number, kind: CrlRow["kind"]): Promise<CrlRow | undefined> {
  const [row] = await db
    .select()
    .from(crls)
    .where(and(eq(crls.issuerId, issuerId), eq(crls.partition, partition), eq(crls.kind, kind)));
  return row && { ...row, crlNumber: BigInt(row.crlNumber), baseCrlNumber: row.baseCrlNumber === null ? null : BigInt(row.baseCrlNumber) };
}
