import crypto from "node:crypto";
import type { Principal } from "../auth/api-tokens.ts";
import { Rejection } from "../errors.ts";
import {
  approvalRequestById,
  approvalsOf,
  approvalsOfMany,
  expireApprovalRequests,
  insertApprovalRequest,
  listApprovalRequests,
  transitionApprovalRequest,
  type ApprovalRequestFilter,
  type ApprovalRequestRow,
  type ApprovalRow,
  type RequestKind,
} from "../store/approvals.ts";
import { chainPemOf } from "../store/cas.ts";
import { certificateBySerial, type CertificateRow } from "../store/certificates.ts";
import type { Database } from "../store/database.ts";
import { recordAudit, type ApprovalDeps } from "./context.ts";

/** A request with its decisions, and for an issued one the certificate and the CA certificate that signed it. */
export interface RequestState {
  request: ApprovalRequestRow;
  approvals: ApprovalRow[];
  certificate?: CertificateRow;
  chainPem?: string;
}

export interface NewRequest {
  kind: RequestKind;
  payload: Record<string, unknown>;
  /** An API token id, "cli", or system:<job>. */
  requestedBy: string;
  required: number;
  ttlMs: number;
}

/** Stores a pending request; it expires after ttlMs unless enough admins approve it first. */
export async function createApprovalRequest(deps: Pick<ApprovalDeps, "db" | "now" | "audit">, input: NewRequest): Promise<RequestState> {
  if (input.required < 1) throw new Error("an approval request needs at least one approval");
  const now = deps.now();
  const request = await insertApprovalRequest(deps.db, {
    id: crypto.randomBytes(8).toString("hex"),
    kind: input.kind,
    requestedBy: input.requestedBy,
    status: "pending",
    required: input.required,
    payload: input.payload,
    createdAt: now,
    expiresAt: new Date(now.getTime() + input.ttlMs),
  });
  await recordAudit(deps, {
    kind: "approval.request",
    actor: input.requestedBy,
    subject: request.id,
    result: "ok",
    details: { kind: input.kind, required: input.required, expiresAt: request.expiresAt.toISOString(), ...summaryOf(request) },
  });
  return { request, approvals: [] };
}

/** Admins and auditors see every request; anyone else only their own. */
export function mayView(p: Principal, request: ApprovalRequestRow): boolean {
  return p.role === "admin" || p.role === "auditor" || p.tokenId === request.requestedBy;
}

/** One request as the principal may see it; not-found also when it is someone else's. */
export async function getApprovalRequest(deps: Pick<ApprovalDeps, "db" | "now" | "audit">, id: string, principal: Principal): Promise<RequestState> {
  const row = /^[0-9a-f]{16}$/.test(id) ? await approvalRequestById(deps.db, id) : undefined;
  if (!row || !mayView(principal, row)) throw new Rejection("not-found", `no approval request ${id}`);
  return stateOf(deps.db, await expireIfDue(deps, row));
}

export async function listApprovalRequestStates(deps: Pick<ApprovalDeps, "db" | "now" | "audit">, filter: ApprovalRequestFilter): Promise<RequestState[]> {
  await expireApprovalRequestsNow(deps);
  const rows = await listApprovalRequests(deps.db, filter);
  const all = await approvalsOfMany(deps.db, rows.map((r) => r.id));
  return rows.map((request) => ({ request, approvals: all.filter((a) => a.requestId === request.id) }));
}

/**
 * Marks pending requests past their expiry as expired. Decisions and reads
 * do this for the requests they touch; a periodic job (wired in
 * src/service.ts; docs/operations.md, Approvals) keeps the table honest in between.
 */
export async function expireApprovalRequestsNow(deps: Pick<ApprovalDeps, "db" | "now" | "audit">): Promise<ApprovalRequestRow[]> {
  const expired = await expireApprovalRequests(deps.db, deps.now());
  for (const r of expired) await recordAudit(deps, expiryEvent(r));
  return expired;
}

export async function expireIfDue(deps: Pick<ApprovalDeps, "db" | "now" | "audit">, row: ApprovalRequestRow): Promise<ApprovalRequestRow> {
  if (row.status !== "pending" || row.expiresAt > deps.now()) return row;
  const expired = await transitionApprovalRequest(deps.db, row.id, "pending", "expired");
  if (expired) await recordAudit(deps, expiryEvent(expired));
  return expired ?? (await approvalRequestById(deps.db, row.id))!;
}

export function expiryEvent(r: ApprovalRequestRow) {
  return { kind: "approval.expire", actor: "system:approvals", subject: r.id, result: "ok", details: { kind: r.kind, expiresAt: r.expiresAt.toISOString() } } as const;
}

export async function stateOf(db: Database, request: ApprovalRequestRow): Promise<RequestState> {
  const state: RequestState = { request, approvals: await approvalsOf(db, request.id) };
  const serial = request.kind === "issue" && typeof request.result?.serial === "string" ? request.result.serial : undefined;
  if (serial) {
    state.certificate = await certificateBySerial(db, serial);
    if (state.certificate) state.chainPem = await chainPemOf(db, state.certificate.issuerId);
  }
  return state;
}

/** What the request is about, in a few fields (no CSR, no secrets): for audit details and listings. */
export function summaryOf(r: ApprovalRequestRow): Record<string, unknown> {
  const p = r.payload;
  switch (r.kind) {
    case "issue":
      return { profile: p.profile, validity: p.validity ?? null };
    case "rotate":
      return { retire: p.retire, subject: p.subject, algorithm: p.algorithm, validityDays: p.validityDays };
    case "destroy-key":
      return { caId: p.caId, subject: p.subject, keyLabel: p.keyLabel };
  }
}

export function approvalCount(state: RequestState): number {
  return state.approvals.filter((a) => a.decision === "approve").length;
}
