import { and, asc, eq, gt, inArray, sql, type SQL } from "drizzle-orm";
import type { Database } from "./database.ts";
import { certificateWriterFor } from "./certificate-writer.ts";
import { certificates } from "./schema.ts";

export type CertificateRow = typeof certificates.$inferSelect;
export type NewCertificateRow = typeof certificates.$inferInsert;

/**
 * Resolves once the row is committed (grouped with concurrent ones, see
 * CertificateWriter). Throws (unique violation) if the serial was ever
 * used: the database guards uniqueness.
 */
export function insertCertificate(db: Database, row: NewCertificateRow): Promise<CertificateRow> {
  return certificateWriterFor(db).insert(row);
}

export async function certificateBySerial(db: Database, serial: string): Promise<CertificateRow | undefined> {
  const [row] = await db.select().from(certificates).where(eq(certificates.serial, serial));
  return row;
}

export interface CertificateFilter {
  profile?: string;
  /** Only these profiles (an issuer token's scope). */
  profiles?: string[];
  /** Only those requested by this API token id (an issuer token sees its own). */
  requestedBy?: string;
  status?: CertificateRow["status"];
  /** Rows after this id (the previous page's cursor). */
  afterId?: number;
  limit: number;
}

export async function listCertificates(db: Database, f: CertificateFilter): Promise<CertificateRow[]> {
  const where: SQL[] = [];
  if (f.profile) where.push(eq(certificates.profile, f.profile));
  if (f.profiles) where.push(inArray(certificates.profile, f.profiles));
  if (f.requestedBy !== undefined) where.push(eq(certificates.requestedBy, f.requestedBy));
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

export interface Revocation {
  reason: number;
  at: Date;
  invalidityDate?: Date;
  by: string;
}

/** valid -> revoked, once: undefined when the certificate was revoked already (or does not exist). */
export async function revokeCertificate(db: Database, serial: string, r: Revocation): Promise<CertificateRow | undefined> {
  const [row] = await db
    .update(certificates)
    // Its stored "good" must be re-signed: the OCSP upkeep finds it by the pending index.
    .set({ status: "revoked", revokedAt: r.at, revocationReason: r.reason, invalidityDate: r.invalidityDate ?? null, revokedBy: r.by, ocspPending: true })
    .where(and(eq(certificates.serial, serial), eq(certificates.status, "valid")))
    .returning();
  return row;
}

export interface RevokedEntry {
  id: number;
  serial: string;
  revokedAt: Date;
  reason: number | null;
  invalidityDate: Date | null;
}

/**
 * Revoked, unexpired certificates of an issuer (optionally one CRL
 * partition, optionally only those revoked after a time), in pages by id so
 * that a million entries never sit in memory as rows at once.
 */
export async function* revokedEntries(
  db: Database,
  q: { issuerId: number; partition?: number; revokedAfter?: Date; notExpiredAt: Date; pageSize?: number },
): AsyncGenerator<RevokedEntry> {
  let afterId = 0;
  for (;;) {
    const where: SQL[] = [
      eq(certificates.issuerId, q.issuerId),
      eq(certificates.status, "revoked"),
      gt(certificates.notAfter, q.notExpiredAt),
      gt(certificates.id, afterId),
    ];
    if (q.partition !== undefined) where.push(eq(certificates.crlPartition, q.partition));
    if (q.revokedAfter) where.push(gt(certificates.revokedAt, q.revokedAfter));
    const page = await db
      .select({
        id: certificates.id,
        serial: certificates.serial,
        revokedAt: certificates.revokedAt,
        reason: certificates.revocationReason,
        invalidityDate: certificates.invalidityDate,
      })
      .from(certificates)
      .where(and(...where))
      .orderBy(asc(certificates.id))
      .limit(q.pageSize ?? 10_000);
    for (const r of page) yield { ...r, revokedAt: r.revokedAt! };
    if (page.length < (q.pageSize ?? 10_000)) return;
    afterId = page.at(-1)!.id;
  }
}

/** Serials revoked after a time (any issuer): how replicas learn of revocations made elsewhere. */
export async function revokedSince(db: Database, since: Date): Promise<Array<{ serial: string; issuerId: number; revokedAt: Date }>> {
  const rows = await revokedSinceQuery(db, since);
  return rows.map((r) => ({ serial: r.serial, issuerId: r.issuerId, revokedAt: r.revokedAt! }));
}

/** revokedSince's query, which every replica sends every few seconds: it reads certificates_revoked_at_idx (revoked rows only). */
export function revokedSinceQuery(db: Database, since: Date) {
  return db
    .select({ serial: certificates.serial, issuerId: certificates.issuerId, revokedAt: certificates.revokedAt })
    .from(certificates)
    .where(gt(certificates.revokedAt, since))
    .orderBy(asc(certificates.revokedAt))
    .limit(10_000);
}

/** The latest notAfter among an issuer's certificates: its key is needed until then. */
export async function lastExpiryOf(db: Database, issuerId: number): Promise<Date | undefined> {
  const [row] = await db
    .select({ last: sql<Date | string | null>`max(${certificates.notAfter})` })
    .from(certificates)
    .where(eq(certificates.issuerId, issuerId));
  return row?.last ? new Date(row.last) : undefined;
}
