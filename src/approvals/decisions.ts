import type { Principal } from "../auth/api-tokens.ts";
import { Rejection } from "../errors.ts";
import { countApprovals, insertApproval, lockApprovalRequest, transitionApprovalRequest, type ApprovalRequestRow } from "../store/approvals.ts";
import { recordAudit, type ApprovalDeps } from "./context.ts";
import { isCaChange } from "./ca-changes.ts";
import { executeApprovedIssue, type Execution } from "./execute.ts";
import { expiryEvent, stateOf, type RequestState } from "./requests.ts";

export type Decision = "approve" | "reject";

export interface DecisionOutcome {
  state: RequestState;
  /** Set when this decision was the last approval needed for an "issue" request, and it ran. */
  execution?: Execution;
}

type Locked =
  | { kind: "expired"; request: ApprovalRequestRow }
  | { kind: "recorded"; request: ApprovalRequestRow }
  | { kind: "rejected"; request: ApprovalRequestRow }
  | { kind: "approved"; request: ApprovalRequestRow };

/**
 * One admin approves or rejects a pending request. The request row is
 * locked for the decision, so decisions take turns: the approval that
 * brings the count to `required` moves it pending -> approved (a guarded
 * update as well). An "issue" request is then issued by that caller (the
 * issuer's signer, no key manager); a CA change (rotate, destroy-key) is
 * only recorded as approved: generating or destroying a key never runs
 * inside a decision (an HTTP request), but in src/jobs/approved-requests.ts
 * or the CLI's `hsm-ca approve` (executeApprovedCaChange). A rejection by any
 * admin ends it. Errors are Rejections: not-found (404), forbidden (403:
 * not an admin, or the requester approving their own request), not-pending
 * (409: decided, executed or expired; an expired one is marked so).
 */
export async function decideApprovalRequest(deps: ApprovalDeps, id: string, principal: Principal, decision: Decision): Promise<DecisionOutcome> {
  if (principal.role !== "admin") throw new Rejection("forbidden", `only admins approve or reject requests, not an ${principal.role} token`);
  const now = deps.now();
  const locked = await deps.db.transaction(async (txRaw): Promise<Locked> => {
    const tx = txRaw as unknown as ApprovalDeps["db"];
    const request = /^[0-9a-f]{16}$/.test(id) ? await lockApprovalRequest(tx, id) : undefined;
    if (!request) throw new Rejection("not-found", `no approval request ${id}`);
    if (request.status === "pending" && request.expiresAt <= now) {
      const expired = await transitionApprovalRequest(tx, id, "pending", "expired");
      return { kind: "expired", request: expired ?? request };
    }
    if (request.status !== "pending") throw new Rejection("not-pending", `request ${id} is ${request.status}, not pending`);
    if (decision === "approve" && request.requestedBy === principal.tokenId) {
      throw new Rejection("forbidden", `token ${principal.tokenId} made request ${id}: another admin must approve it`);
    }
    if (!(await insertApproval(tx, { requestId: id, approver: principal.tokenId, decision, at: now }))) {
      throw new Rejection("not-pending", `token ${principal.tokenId} has decided on request ${id} already`);
    }
    if (decision === "reject") {
      return { kind: "rejected", request: (await transitionApprovalRequest(tx, id, "pending", "rejected"))! };
    }
    if ((await countApprovals(tx, id)) < request.required) return { kind: "recorded", request };
    const approved = await transitionApprovalRequest(tx, id, "pending", "approved");
    return approved ? { kind: "approved", request: approved } : { kind: "recorded", request };
  });

  if (locked.kind === "expired") {
    await recordAudit(deps, expiryEvent(locked.request));
    throw new Rejection("not-pending", `request ${id} expired at ${locked.request.expiresAt.toISOString()}`);
  }

  // ── AUDIT: an approval decision is recorded here (committed above). ──
  await recordAudit(deps, {
    kind: decision === "approve" ? "approval.approve" : "approval.reject",
    actor: principal.tokenId,
    subject: id,
    result: "ok",
    details: { kind: locked.request.kind, status: locked.request.status, required: locked.request.required },
  });
  deps.log?.info({ request: id, kind: locked.request.kind, decision, by: principal.tokenId, status: locked.request.status }, "approval decision");

  if (locked.kind !== "approved") return { state: await stateOf(deps.db, locked.request) };
  if (isCaChange(locked.request.kind)) {
    deps.caChangeApproved?.();
    return { state: await stateOf(deps.db, locked.request) };
  }
  const execution = await executeApprovedIssue(deps, locked.request);
  return { state: await stateOf(deps.db, execution.request), execution };
}
