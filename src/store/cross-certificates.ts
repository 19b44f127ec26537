import { and, asc, eq } from "drizzle-orm";
import type { Database } from "./database.ts";
import { caCrossCertificates } from "./schema.ts";

export type CrossCertificateRow = typeof caCrossCertificates.$inferSelect;
export type NewCrossCertificateRow = typeof caCrossCertificates.$inferInsert;

export async function insertCrossCertificate(db: Database, row: NewCrossCertificateRow): Promise<CrossCertificateRow> {
  const [inserted] = await db.insert(caCrossCertificates).values(row).returning();
  return inserted!;
}

/** Every cross certificate, oldest first (a tiny table: one or two per root rollover). */
export async function listCrossCertificates(db: Database): Promise<CrossCertificateRow[]> {
  return db.select().from(caCrossCertificates).orderBy(asc(caCrossCertificates.id));
}

/** A cross certificate by the CA that signed it and its serial (OCSP for cross certificates). */
export async function crossCertificateBySerial(db: Database, issuerCaId: number, serial: string): Promise<CrossCertificateRow | undefined> {
  const [row] = await db
    .select()
    .from(caCrossCertificates)
    .where(and(eq(caCrossCertificates.issuerCaId, issuerCaId), eq(caCrossCertificates.serial, serial)));
  return row;
}

/** Whether `caId` has a certificate signed by `issuerCaId` that is neither revoked nor expired. */
export async function hasLiveCrossCertificate(db: Database, caId: number, issuerCaId: number, now: Date): Promise<boolean> {
  const rows = await db
    .select()
    .from(caCrossCertificates)
    .where(and(eq(caCrossCertificates.caId, caId), eq(caCrossCertificates.issuerCaId, issuerCaId)));
  return rows.some((r) => !r.revokedAt && r.notAfter > now);
}
