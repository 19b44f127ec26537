import { and, asc, desc, eq, getTableColumns, gt, gte, ne, or, sql, type SQL } from "drizzle-orm";
import type { Database } from "./database.ts";
import { LOCKS, withAdvisoryLock } from "./locks.ts";
import { auditCheckpoints, auditLog } from "./schema.ts";

/** The only code that reads or writes the audit tables (src/audit/* builds on it). */
export type AuditRow = typeof auditLog.$inferSelect;
export type AuditCheckpointRow = typeof auditCheckpoints.$inferSelect;
export type NewAuditCheckpoint = typeof auditCheckpoints.$inferInsert;

/** Rows per INSERT: one JSON parameter of at most this many entries. */
const INSERT_CHUNK = 500;

/** Runs fn in a transaction holding the audit lock: one writer at a time extends the chain, across replicas. */
export function withAuditLock<T>(db: Database, fn: (tx: Database) => Promise<T>): Promise<T> {
  return withAdvisoryLock(db, LOCKS.audit, fn);
}

/** The last entry of the chain (highest seq). */
export async function auditHead(db: Database): Promise<{ seq: number; hash: string } | undefined> {
  const [row] = await db.select({ seq: auditLog.seq, hash: auditLog.hash }).from(auditLog).orderBy(desc(auditLog.seq)).limit(1);
  return row;
}

/**
 * One statement text whatever the number of rows (they go as one JSON
 * parameter): the database plans it once per connection, where a VALUES
 * list of each length was a new statement to parse and plan.
 */
export async function insertAuditEntries(db: Database, rows: AuditRow[]): Promise<void> {
  for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
    const chunk = rows.slice(i, i + INSERT_CHUNK).map((r) => ({
      seq: r.seq,
      at: r.at.toISOString(),
      kind: r.kind,
      actor: r.actor,
      subject: r.subject,
      result: r.result,
      details: r.details,
      prev_hash: r.prevHash,
      hash: r.hash,
    }));
    await db.execute(sql`
      insert into audit_log (seq, at, kind, actor, subject, result, details, prev_hash, hash)
      select * from json_to_recordset(${JSON.stringify(chunk)}::json)
        as r(seq bigint, at timestamptz, kind text, actor text, subject text, result text, details jsonb, prev_hash text, hash text)`);
  }
}

/**
 * Entries in seq order after afterSeq; with since, only those recorded at
 * or after it. subMillisecond: `at` has digits below the millisecond, which
 * the writer never stores (and a Date cannot show).
 */
export async function auditEntriesPage(
  db: Database,
  opts: { afterSeq: number; since?: Date; limit: number },
): Promise<Array<AuditRow & { subMillisecond: boolean }>> {
  const where: SQL[] = [gt(auditLog.seq, opts.afterSeq)];
  if (opts.since) where.push(gte(auditLog.at, opts.since));
  return db
    .select({ ...getTableColumns(auditLog), subMillisecond: sql<boolean>`(extract(microseconds from ${auditLog.at})::bigint % 1000) <> 0` })
    .from(auditLog)
    .where(and(...where))
    .orderBy(asc(auditLog.seq))
    .limit(opts.limit);
}

/** The seqs of the entries with this hash (normally none or one). A full scan: for diagnosing a broken chain only. */
export async function auditSeqsByHash(db: Database, hash: string): Promise<number[]> {
  const rows = await db.select({ seq: auditLog.seq }).from(auditLog).where(eq(auditLog.hash, hash)).orderBy(asc(auditLog.seq));
  return rows.map((r) => r.seq);
}

/** Is there an entry after seq that is not by this actor? */
export async function hasAuditEntriesAfter(db: Database, seq: number, exceptActor: string): Promise<boolean> {
  const [row] = await db
    .select({ seq: auditLog.seq })
    .from(auditLog)
    .where(and(gt(auditLog.seq, seq), or(ne(auditLog.actor, exceptActor), sql`${auditLog.kind} not like 'hsm.%'`)))
    .limit(1);
  return row !== undefined;
}

export async function lastAuditCheckpoint(db: Database): Promise<AuditCheckpointRow | undefined> {
  const [row] = await db.select().from(auditCheckpoints).orderBy(desc(auditCheckpoints.seq), desc(auditCheckpoints.id)).limit(1);
  return row;
}

export async function insertAuditCheckpoint(db: Database, row: NewAuditCheckpoint): Promise<AuditCheckpointRow> {
  const [inserted] = await db.insert(auditCheckpoints).values(row).returning();
  return inserted!;
}

export async function listAuditCheckpoints(db: Database): Promise<AuditCheckpointRow[]> {
  return db.select().from(auditCheckpoints).orderBy(asc(auditCheckpoints.seq), asc(auditCheckpoints.id));
}
