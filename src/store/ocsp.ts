import { and, asc, eq, gt, inArray, isNotNull, isNull, lt, or, sql } from "drizzle-orm";
import type { Database } from "./database.ts";
import { cas, certificates, ocspResponders, ocspResponses } from "./schema.ts";

export type OcspResponderRow = typeof ocspResponders.$inferSelect;
export type OcspResponseRow = typeof ocspResponses.$inferSelect;

export async function activeResponder(db: Database, issuerId: number): Promise<OcspResponderRow | undefined> {
  const [row] = await db
    .select()
    .from(ocspResponders)
    .where(and(eq(ocspResponders.issuerId, issuerId), eq(ocspResponders.status, "active")))
    .orderBy(sql`${ocspResponders.notAfter} desc`)
    .limit(1);
  return row;
}

/** Makes `row` the issuer's active responder and retires the one before. */
export async function replaceResponder(db: Database, row: typeof ocspResponders.$inferInsert): Promise<OcspResponderRow> {
  return db.transaction(async (tx) => {
    await tx.update(ocspResponders).set({ status: "retired" }).where(and(eq(ocspResponders.issuerId, row.issuerId), eq(ocspResponders.status, "active")));
    const [inserted] = await tx.insert(ocspResponders).values(row).returning();
    return inserted!;
  });
}

export async function saveOcspResponse(db: Database, row: OcspResponseRow): Promise<void> {
  await db.insert(ocspResponses).values(row).onConflictDoUpdate({ target: ocspResponses.serial, set: row });
}

export async function ocspResponseFor(db: Database, serial: string): Promise<OcspResponseRow | undefined> {
  const [row] = await db.select().from(ocspResponses).where(eq(ocspResponses.serial, serial));
  return row;
}

/**
 * Which of these serials are revoked now, end-entity and CA certificates
 * alike: one round trip, by the unique index on certificates.serial (the CA
 * table holds a handful of rows).
 */
export async function revokedAmong(db: Database, serials: string[]): Promise<Set<string>> {
  if (serials.length === 0) return new Set();
  const rows = await db
    .select({ serial: certificates.serial })
    .from(certificates)
    .where(and(inArray(certificates.serial, serials), isNotNull(certificates.revokedAt)))
    .unionAll(db.select({ serial: cas.serial }).from(cas).where(and(inArray(cas.serial, serials), isNotNull(cas.revokedAt))));
  return new Set(rows.map((r) => r.serial));
}

/**
 * Unexpired certificates whose stored response is missing, due for refresh,
 * or says "good" although the certificate has been revoked.
 */
export async function certificatesNeedingOcsp(db: Database, now: Date, refreshBefore: Date, limit: number) {
  return db
    .select({ serial: certificates.serial, issuerId: certificates.issuerId })
    .from(certificates)
    .leftJoin(ocspResponses, eq(ocspResponses.serial, certificates.serial))
    .where(
      and(
        gt(certificates.notAfter, now),
        // Certificates say valid/revoked, responses good/revoked: compare revoked-ness.
        or(
          isNull(ocspResponses.serial),
          lt(ocspResponses.nextUpdate, refreshBefore),
          sql`(${ocspResponses.status} = 'revoked') <> (${certificates.status} = 'revoked')`,
        ),
      ),
    )
    .orderBy(asc(certificates.id))
    .limit(limit);
}

/** Retires every responder of an issuer; returns their key labels (to destroy). */
export async function retireResponders(db: Database, issuerId: number): Promise<string[]> {
  const rows = await db.update(ocspResponders).set({ status: "retired" }).where(eq(ocspResponders.issuerId, issuerId)).returning({ keyLabel: ocspResponders.keyLabel });
  return rows.map((r) => r.keyLabel);
}
