import type { Logger } from "pino";
import type { ActiveIssuer } from "../issuance/issuer.ts";
import type { Metrics } from "../metrics/catalogue.ts";
import type { Profile } from "../policy/profile-schema.ts";
import type { RevocationPublishing } from "../revocation/pointers.ts";
import type { Database } from "../store/database.ts";

/** Admins who approve a manual rotation or a key destruction when nothing else is configured (HSM_CA_CA_CHANGE_APPROVALS). */
export const DEFAULT_CA_CHANGE_APPROVALS = 2;

/** Refusals at execution time that are the request's fault or the CA's state, not a bug. */
export class ApprovalExecutionError extends Error {}

/** How long a request stays open when nothing else is configured (HSM_CA_APPROVAL_TTL). */
export const DEFAULT_APPROVAL_TTL_MS = 24 * 3_600_000;

/** What an approval decision or its execution becomes in the audit log (audit_log columns). */
export interface ApprovalAuditEvent {
  kind: "approval.request" | "approval.approve" | "approval.reject" | "approval.expire" | "approval.execute";
  /** An API token id, "cli", or system:<job>. */
  actor: string;
  /** The request id. */
  subject: string;
  result: "ok" | "error";
  details: Record<string, unknown>;
}

export interface ApprovalAudit {
  record(event: ApprovalAuditEvent): void | Promise<void>;
}

/**
 * What the approval workflow runs against. The REST API builds it from its
 * AppContext, the CLI from its CommandEnv (in its own process, or inside
 * the service when the command came over the control socket). No key
 * manager: a decision only records; an approved CA change is carried out
 * by src/jobs/approved-requests.ts (or by the CLI's approve, a ceremony),
 * which get one (CaChangeDeps in ./ca-changes.ts).
 */
export interface ApprovalDeps {
  db: Database;
  profiles: ReadonlyMap<string, Profile>;
  /** The issuing CA now, for "issue" requests. */
  issuer(): ActiveIssuer | Promise<ActiveIssuer>;
  /** CRL/OCSP pointers for issued certificates, and the URLs a rotation writes into the new intermediate. */
  revocation?: RevocationPublishing;
  log?: Logger;
  now(): Date;
  /** Tells a running service that the hierarchy changed (after an approved rotation). */
  hierarchyChanged?(): Promise<void>;
  /** Told when a decision made a CA change approved: the service carries it out at once rather than at the job's next tick. */
  caChangeApproved?(): void;
  /** The audit log, when there is one: every request, decision, expiry and execution is given to it. */
  audit?: ApprovalAudit;
  /** The service's Prometheus metrics (issuance of approved requests); unset: nothing counted. */
  metrics?: Metrics;
}

/** Gives an event to the audit log, detail keys in snake_case as the log's convention is ("kind" becomes "request_kind"). */
export async function recordAudit(deps: Pick<ApprovalDeps, "audit">, event: ApprovalAuditEvent): Promise<void> {
  if (!deps.audit) return;
  const details = Object.fromEntries(
    Object.entries(event.details).map(([k, v]) => [k === "kind" ? "request_kind" : k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), v]),
  );
  await deps.audit.record({ ...event, details });
}
