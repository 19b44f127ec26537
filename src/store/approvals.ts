import { and, asc, desc, eq, inArray, lte, sql, type SQL } from "drizzle-orm";
import type { Database } from "./database.ts";
import { approvalRequests, approvals } from "./schema.ts";

export type ApprovalRequestRow = typeof approvalRequests.$inferSelect;
export type NewApprovalRequestRow = typeof approvalRequests.$inferInsert;
export type ApprovalRow = typeof approvals.$inferSelect;
export type RequestKind = ApprovalRequestRow["kind"];
export type RequestStatus = ApprovalRequestRow["status"];

export async function insertApprovalRequest(db: Database, row: NewApprovalRequestRow): Promise<ApprovalRequestRow> {
  const [inserted] = await db.insert(approvalRequests).values(row).returning();
  return inserted!;
}

export async function approvalRequestById(db: Database, id: string): Promise<ApprovalRequestRow | undefined> {
  const [row] = await db.select().from(approvalRequests).where(eq(approvalRequests.id, id));
  return row;
}

/** The request, locked until the transaction ends: decisions on one request take turns. */
export async function lockApprovalRequest(tx: Database, id: string): Promise<ApprovalRequestRow | undefined> {
  const [row] = await tx.select().from(approvalRequests).where(eq(approvalRequests.id, id)).for("update");
  return row;
}

export interface ApprovalRequestFilter {
  status?: RequestStatus;
  kind?: RequestKind;
  limit: number;
}

/** Newest first. */
export async function listApprovalRequests(db: Database, f: ApprovalRequestFilter): Promise<ApprovalRequestRow[]> {
  const where: SQL[] = [];
  if (f.status) where.push(eq(approvalRequests.status, f.status));
  if (f.kind) where.push(eq(approvalRequests.kind, f.kind));
  return db
    .select()
    .from(approvalRequests)
    .where(and(...where))
    .orderBy(desc(approvalRequests.createdAt), desc(approvalRequests.id))
    .limit(f.limit);
}

/**
 * The one guarded state change: from -> to only if the request is still in
 * `from`. Undefined when another process changed it first (two approvals
 * racing: only one of them executes the request).
 */
export async function transitionApprovalRequest(
  db: Database,
  id: string,
  from: RequestStatus,
  to: RequestStatus,
  result?: Record<string, unknown>,
): Promise<ApprovalRequestRow | undefined> {
  const [row] = await db
    .update(approvalRequests)
    .set(result === undefined ? { status: to } : { status: to, result })
    .where(and(eq(approvalRequests.id, id), eq(approvalRequests.status, from)))
    .returning();
  return row;
}

/** Pending requests past their expiry become expired; returns them. */
export async function expireApprovalRequests(db: Database, now: Date): Promise<ApprovalRequestRow[]> {
  return db
    .update(approvalRequests)
    .set({ status: "expired" })
    .where(and(eq(approvalRequests.status, "pending"), lte(approvalRequests.expiresAt, now)))
    .returning();
}

/** Records one admin's decision; false when that admin had decided on this request already. */
export async function insertApproval(db: Database, row: { requestId: string; approver: string; decision: ApprovalRow["decision"]; at: Date }): Promise<boolean> {
  const inserted = await db.insert(approvals).values(row).onConflictDoNothing().returning();
  return inserted.length === 1;
}

export async function approvalsOf(db: Database, requestId: string): Promise<ApprovalRow[]> {
  return db.select().from(approvals).where(eq(approvals.requestId, requestId)).orderBy(asc(approvals.at), asc(approvals.approver));
}

export async function approvalsOfMany(db: Database, requestIds: string[]): Promise<ApprovalRow[]> {
  if (requestIds.length === 0) return [];
  return db.select().from(approvals).where(inArray(approvals.requestId, requestIds)).orderBy(asc(approvals.at), asc(approvals.approver));
}

export async function countApprovals(db: Database, requestId: string): Promise<number> {
  return db.$count(approvals, and(eq(approvals.requestId, requestId), eq(approvals.decision, "approve")));
}

/** Requests of a kind whose payload has `field` equal to `value` (e.g. destroy-key for one CA), in these states. */
export async function requestsByPayloadField(
  db: Database,
  kind: RequestKind,
  field: string,
  value: string,
  statuses: RequestStatus[],
): Promise<ApprovalRequestRow[]> {
  return db
    .select()
    .from(approvalRequests)
    .where(and(eq(approvalRequests.kind, kind), sql`${approvalRequests.payload} ->> ${field} = ${value}`, inArray(approvalRequests.status, statuses)));
}

/** Pending requests per kind (kinds with none are absent). */
export async function countPendingApprovalRequests(db: Database): Promise<Array<{ kind: RequestKind; count: number }>> {
  const rows = await db
    .select({ kind: approvalRequests.kind, count: sql<number>`count(*)::int` })
    .from(approvalRequests)
    .where(eq(approvalRequests.status, "pending"))
    .groupBy(approvalRequests.kind);
  return rows.map((r) => ({ kind: r.kind, count: Number(r.count) }));
}
