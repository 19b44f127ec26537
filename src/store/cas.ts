import { and, asc, eq, isNull, ne } from "drizzle-orm";
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

/**
 * The active root, or the active issuing intermediate: an external
 * intermediate (a certificate between an external root and ours, kept to
 * serve the chain) is never the one that issues.
 */
export async function activeCa(db: Database, role: CaRow["role"]): Promise<CaRow | undefined> {
  const [row] = await db
    .select()
    .from(cas)
    .where(and(eq(cas.role, role), eq(cas.status, "active"), role === "intermediate" ? ne(cas.keyOrigin, "external") : undefined))
    .orderBy(asc(cas.id))
    .limit(1);
  return row;
}

export async function caById(db: Database, id: number): Promise<CaRow | undefined> {
  const [row] = await db.select().from(cas).where(eq(cas.id, id));
  return row;
}

/** CAs revoked after a time: their parent's CRL must be republished. */
export async function casRevokedSince(db: Database, since: Date): Promise<CaRow[]> {
  const rows = await listCas(db);
  return rows.filter((r) => r.revokedAt && r.revokedAt > since);
}

export async function revokeCa(db: Database, id: number, reason: number, at: Date): Promise<CaRow | undefined> {
  const [row] = await db
    .update(cas)
    .set({ status: "revoked", revokedAt: at, revocationReason: reason })
    .where(and(eq(cas.id, id), isNull(cas.revokedAt)))
    .returning();
  return row;
}

/** A CA certificate by serial among the children of a CA (OCSP for intermediates). */
export async function childCaBySerial(db: Database, parentId: number, serial: string): Promise<CaRow | undefined> {
  const [row] = await db.select().from(cas).where(and(eq(cas.parentId, parentId), eq(cas.serial, serial)));
  return row;
}

/** The one step of a rotation: the new intermediate becomes active, the old one stops issuing. */
export async function retireCa(db: Database, id: number): Promise<void> {
  await db.update(cas).set({ status: "retired" }).where(and(eq(cas.id, id), eq(cas.status, "active")));
}

export async function markKeyDestroyed(db: Database, id: number, at: Date): Promise<void> {
  await db.update(cas).set({ keyDestroyedAt: at }).where(eq(cas.id, id));
}

/**
 * The certificates a relying party needs between a leaf of this CA and the
 * root, PEM: the CA's own, then those of the CAs above it that are not
 * roots (external intermediates between an external root and ours).
 */
export async function chainPemOf(db: Database, caId: number): Promise<string | undefined> {
  const pems: string[] = [];
  let ca = await caById(db, caId);
  // Bounded: a parent loop in the table must not hang a request.
  for (let depth = 0; ca && ca.role !== "root" && depth < 8; depth++) {
    pems.push(ca.certificatePem.trim() + "\n");
    ca = ca.parentId === null ? undefined : await caById(db, ca.parentId);
  }
  return pems.length ? pems.join("") : undefined;
}

/** A CA whose key is not on this HSM: an external root, or an external intermediate below it. */
export function isExternal(ca: Pick<CaRow, "keyOrigin">): boolean {
  return ca.keyOrigin === "external";
}

/** An external CA's key certified again (a new certificate from the CA above it): its row carries the new certificate, active. */
export async function replaceCaCertificate(db: Database, id: number, row: NewCaRow): Promise<CaRow> {
  const [updated] = await db.update(cas).set({ ...row, status: "active" }).where(eq(cas.id, id)).returning();
  return updated!;
}
