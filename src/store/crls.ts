import { and, eq, getTableColumns, sql } from "drizzle-orm";
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

/**
 * Stores a CRL unless a higher-numbered one for the same scope is there
 * already (replicas may build at once). The DER goes over the wire once:
 * the update takes it from the row being inserted.
 */
export async function saveCrl(db: Database, row: CrlRow): Promise<void> {
  const excluded = (column: string) => sql.raw(`excluded.${column}`);
  await db
    .insert(crls)
    .values(row)
    .onConflictDoUpdate({
      target: [crls.issuerId, crls.partition, crls.kind],
      set: {
        crlNumber: excluded("crl_number"),
        baseCrlNumber: excluded("base_crl_number"),
        coversUntil: excluded("covers_until"),
        thisUpdate: excluded("this_update"),
        nextUpdate: excluded("next_update"),
        entries: excluded("entries"),
        der: excluded("der"),
      },
      setWhere: sql`${crls.crlNumber} < ${excluded("crl_number")}`,
    });
}

export type CrlTimes = Omit<CrlRow, "der">;

/** A CRL's number and times without its bytes (which can be tens of megabytes). */
export async function latestCrlTimes(db: Database, issuerId: number, partition: number, kind: CrlRow["kind"]): Promise<CrlTimes | undefined> {
  const { der: _der, ...columns } = getTableColumns(crls);
  const [row] = await db
    .select(columns)
    .from(crls)
    .where(and(eq(crls.issuerId, issuerId), eq(crls.partition, partition), eq(crls.kind, kind)));
  return row && { ...row, crlNumber: BigInt(row.crlNumber), baseCrlNumber: row.baseCrlNumber === null ? null : BigInt(row.baseCrlNumber) };
}

export async function latestCrl(db: Database, issuerId: number, partition: number, kind: CrlRow["kind"]): Promise<CrlRow | undefined> {
  const [row] = await db
    .select()
    .from(crls)
    .where(and(eq(crls.issuerId, issuerId), eq(crls.partition, partition), eq(crls.kind, kind)));
  return row && { ...row, crlNumber: BigInt(row.crlNumber), baseCrlNumber: row.baseCrlNumber === null ? null : BigInt(row.baseCrlNumber) };
}

/** Per issuer and kind: the oldest thisUpdate and the soonest nextUpdate among its stored CRLs (partitions). */
export async function crlFreshness(db: Database): Promise<Array<{ issuerId: number; kind: CrlRow["kind"]; oldestThisUpdate: Date; soonestNextUpdate: Date }>> {
  const rows = await db
    .select({
      issuerId: crls.issuerId,
      kind: crls.kind,
      oldestThisUpdate: sql<string>`min(${crls.thisUpdate})`,
      soonestNextUpdate: sql<string>`min(${crls.nextUpdate})`,
    })
    .from(crls)
    .groupBy(crls.issuerId, crls.kind);
  // Aggregates come back as text from both drivers.
  return rows.map((r) => ({ ...r, oldestThisUpdate: new Date(r.oldestThisUpdate), soonestNextUpdate: new Date(r.soonestNextUpdate) }));
}
