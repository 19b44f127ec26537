import { and, asc, eq, gt, inArray, type SQL } from "drizzle-orm";
import type { Database } from "./database.ts";
import { certificates } from "./schema.ts";

export type CertificateRow = typeof certificates.$inferSelect;
export type NewCertificateRow = typeof certificates.$inferInsert;

/** Throws (unique violation) if the serial was ever used: the database guards uniqueness. */
export async function insertCertificate(db: Database, row: NewCertificateRow): Promise<CertificateRow> {
  const [inserted] = await db.insert(certificates).values(row).returning();
  return inserted!;
}

export async function certificateBySerial(db: Database, serial: string): Promise<CertificateRow | undefined> {
  const [row] = await db.select().from(certificates).where(eq(certificates.serial, serial));
  return row;
}

export interface CertificateFilter {
  profile?: string;
  /** Only these profiles (an issuer token's scope). */
  profiles?: string[];
  status?: CertificateRow["status"];
  /** Rows after this id (the previous page's cursor). */
  afterId?: number;
  limit: number;
}

export async function listCertificates(db: Database, f: CertificateFilter): Promise<CertificateRow[]> {
  const where: SQL[] = [];
  if (f.profile) where.push(eq(certificates.profile, f.profile));
  if (f.profiles) where.push(inArray(certificates.profile, f.profiles));
  if (f.status) where.push(eq(certificates.status, f.status));
  if (f.afterId !== undefined) where.push(gt(certificates.id, f.afterId));
  return db
    .select()
    .from(certificates)
    .where(and(...where))
    .orderBy(asc(certificates.id))
    .limit(f.limit);
}

export async function countCertificates(db: Database): Promise<number> {
  return db.$count(certificates);
}

/** valid -> revoked, once: undefined when the certificate was revoked already. */
export async function revokeCertificate(db: Database, serial: string, reason: number, at: Date): Promise<CertificateRow | undefined> {
  const [row] = await db
    .update(certificates)
    .set({ status: "revoked", revokedAt: at, revocationReason: reason })
    .where(and(eq(certificates.serial, serial), eq(certificates.status, "valid")))
    .returning();
  return row;
}
