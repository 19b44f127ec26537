import { RotationError } from "../ceremony/rotate.ts";
import { Rejection } from "../errors.ts";
import { issueCertificate } from "../issuance/issue-certificate.ts";
import { countIssuance } from "../metrics/issuance-outcome.ts";
import { transitionApprovalRequest, type ApprovalRequestRow } from "../store/approvals.ts";
import { ApprovalExecutionError, recordAudit, type ApprovalDeps } from "./context.ts";

/** A request that ran: done with its result, or failed with the reason. */
export interface Execution {
  request: ApprovalRequestRow;
  /** For people (the CLI prints it): a ceremony transcript, what was destroyed. */
  text?: string;
}

/** What carrying out a request gave: its result (stored with the request) and the text for people. */
export interface Executed {
  result: Record<string, unknown>;
  text?: string;
}

/** An "issue" request that has just become approved: issued by the caller whose guarded pending -> approved update succeeded. */
export function executeApprovedIssue(deps: ApprovalDeps, request: ApprovalRequestRow): Promise<Execution> {
  return executeApprovedRequest(deps, request, (r) => executeIssue(deps, r));
}

/**
 * Runs an approved request (the caller makes sure it is the only one to
 * run it), then records approved -> done with the result, or approved ->
 * failed with the reason. A request that fails is not retried: its
 * requester asks again.
 */
export async function executeApprovedRequest(
  deps: Pick<ApprovalDeps, "db" | "log" | "audit">,
  request: ApprovalRequestRow,
  run: (request: ApprovalRequestRow) => Promise<Executed>,
): Promise<Execution> {
  let executed: Executed;
  try {
    executed = await run(request);
  } catch (err) {
    const expected = err instanceof Rejection || err instanceof ApprovalExecutionError || err instanceof RotationError;
    const detail = err instanceof Rejection ? err.detail : (err as Error).message;
    const failure = { error: err instanceof Rejection ? err.kind : expected ? "refused" : "internal", detail };
    if (expected) deps.log?.warn({ request: request.id, kind: request.kind, ...failure }, "an approved request could not be executed");
    else deps.log?.error({ request: request.id, kind: request.kind, err }, "an approved request failed");
    const failed = (await transitionApprovalRequest(deps.db, request.id, "approved", "failed", failure)) ?? request;
    await recordAudit(deps, { kind: "approval.execute", actor: "system:approvals", subject: request.id, result: "error", details: { kind: request.kind, ...failure } });
    return { request: failed, text: `request ${request.id} failed: ${detail}` };
  }
  const done = (await transitionApprovalRequest(deps.db, request.id, "approved", "done", executed.result)) ?? request;
  await recordAudit(deps, { kind: "approval.execute", actor: "system:approvals", subject: request.id, result: "ok", details: { kind: request.kind, ...executed.result } });
  deps.log?.info({ request: request.id, kind: request.kind, result: executed.result }, "approved request executed");
  return { request: done, text: executed.text };
}

/** "issue": the stored CSR through the same rules as any issuance; stored before it is handed out. */
async function executeIssue(deps: ApprovalDeps, r: ApprovalRequestRow): Promise<Executed> {
  const p = r.payload as { csr: string; profile: string; validity?: string };
  // A profile removed since the request was made is not a label worth keeping.
  const row = await countIssuance(deps.profiles.has(p.profile) ? deps.metrics : undefined, "approval", p.profile, async () =>
    issueCertificate(
      { db: deps.db, profiles: deps.profiles, issuer: await deps.issuer(), revocation: deps.revocation, audit: deps.audit },
      { csrPem: p.csr, profile: p.profile, validity: p.validity, requestedBy: r.requestedBy, approvedRequest: r.id },
    ),
  );
  return { result: { serial: row.serial }, text: `Issued certificate ${row.serial} (${row.subject || row.sans.join(", ")}), profile ${row.profile}.` };
}
