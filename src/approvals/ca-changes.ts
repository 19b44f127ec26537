import { destroyApprovedKey, KeyMustStayError } from "../ceremony/destroy-retired-keys.ts";
import { formatTranscript } from "../ceremony/init-hierarchy.ts";
import { formatPending } from "../ceremony/pending-intermediate.ts";
import { rotateIntermediate, type RotationPlan } from "../ceremony/rotate.ts";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import type { KeyManager } from "../hsm/key-manager.ts";
import { lockApprovalRequest, type ApprovalRequestRow, type RequestKind } from "../store/approvals.ts";
import { LOCKS, withAdvisoryLock } from "../store/locks.ts";
import { ApprovalExecutionError, type ApprovalDeps } from "./context.ts";
import { executeApprovedRequest, type Executed, type Execution } from "./execute.ts";
import { createApprovalRequest, type RequestState } from "./requests.ts";

/**
 * Changes to the CA hierarchy outside the schedule, gated by
 * HSM_CA_CA_CHANGE_APPROVALS: a manual rotation ("rotate") and the
 * destruction of a retired key ("destroy-key", requested by the clean-up
 * job in src/jobs/key-cleanup.ts).
 *
 * A decision only records that such a request is approved; it is carried
 * out with the key manager by executeApprovedCaChange, called by the
 * approved-requests job (src/jobs/approved-requests.ts) and by the CLI's
 * `hsm-ca approve`, never inside an HTTP request.
 */
export const CA_CHANGE_KINDS = ["rotate", "destroy-key"] as const satisfies readonly RequestKind[];
export type CaChangeKind = (typeof CA_CHANGE_KINDS)[number];

export function isCaChange(kind: RequestKind): kind is CaChangeKind {
  return (CA_CHANGE_KINDS as readonly string[]).includes(kind);
}

/** What carrying out a CA change needs besides the approval workflow's parts: the keys. */
export interface CaChangeDeps extends ApprovalDeps {
  hsm: KeyManager;
}

export interface RotatePayload {
  /** The intermediate the approvers agree to retire; if another rotation happened meanwhile, nothing is done. */
  retire: { id: number; subject: string; keyLabel: string };
  subject: string;
  algorithm: CaKeyAlgorithm;
  validityDays: number;
  /** Absent in requests made before path lengths were configurable: those rotated to pathLen 0. */
  pathLength?: number;
}

export async function requestRotation(
  deps: Pick<ApprovalDeps, "db" | "now" | "audit">,
  input: { plan: RotationPlan; requestedBy: string; required: number; ttlMs: number },
): Promise<RequestState> {
  const { plan } = input;
  const payload: RotatePayload = {
    retire: { id: plan.current.id, subject: plan.current.subject, keyLabel: plan.current.keyLabel },
    subject: plan.subject,
    algorithm: plan.algorithm,
    validityDays: plan.validityDays,
    pathLength: plan.pathLength,
  };
  return createApprovalRequest(deps, { kind: "rotate", payload: { ...payload }, requestedBy: input.requestedBy, required: input.required, ttlMs: input.ttlMs });
}

const EXECUTORS: Record<CaChangeKind, (deps: CaChangeDeps, r: ApprovalRequestRow) => Promise<Executed>> = {
  rotate: executeRotation,
  "destroy-key": executeDestroyKey,
};

/**
 * Carries out one approved CA change, once across processes and replicas:
 * under the hierarchy lock the request row is locked and must still be
 * approved; it becomes done or failed in the same transaction. Undefined
 * when it is not an approved CA change (any more): someone else carried it
 * out, or it is not one. After a rotation, tells the service
 * (hierarchyChanged) once the new intermediate is committed.
 */
export async function executeApprovedCaChange(deps: CaChangeDeps, id: string): Promise<Execution | undefined> {
  const execution = await withAdvisoryLock(deps.db, LOCKS.hierarchy, async (tx) => {
    const request = await lockApprovalRequest(tx, id);
    if (!request || request.status !== "approved" || !isCaChange(request.kind)) return undefined;
    const inTx: CaChangeDeps = { ...deps, db: tx };
    const run = EXECUTORS[request.kind];
    return executeApprovedRequest(inTx, request, (r) => run(inTx, r));
  });
  if (execution?.request.kind === "rotate" && execution.request.status === "done") await deps.hierarchyChanged?.();
  return execution;
}

async function executeRotation(deps: CaChangeDeps, r: ApprovalRequestRow): Promise<Executed> {
  const p = r.payload as unknown as RotatePayload;
  const done = await rotateIntermediate(
    deps.hsm,
    deps.db,
    { intermediateAlgorithm: p.algorithm, intermediateValidityDays: p.validityDays, intermediatePathLength: p.pathLength ?? 0 },
    deps.revocation?.urls,
    `approved request ${r.id}`,
    async (_tx, plan) => plan.current.id === p.retire.id,
  );
  if (!done) throw new ApprovalExecutionError(`${p.retire.subject} is no longer the active intermediate: another rotation happened since request ${r.id}`);
  if (done.awaiting) {
    // Under an external root: the new key and CSR wait for its signature; the current intermediate keeps issuing.
    return {
      result: { pendingId: done.awaiting.id, subject: done.awaiting.subject, keyLabel: done.awaiting.keyLabel, awaitingSignatureSince: done.awaiting.createdAt.toISOString() },
      text: `${formatPending(done.awaiting)}\n\n${done.prepared ? "Prepared" : "Already waiting:"} the next intermediate's key and CSR for the external root to sign; ${p.retire.subject} keeps issuing until hsm-ca ceremony import-intermediate.`,
    };
  }
  return {
    result: { caId: done.row.id, subject: done.row.subject, keyLabel: done.row.keyLabel, retired: p.retire.id },
    text: `${formatTranscript(done.transcript)}\n\nRetired ${p.retire.subject}: it no longer issues, and answers for its certificates until they expire.`,
  };
}

async function executeDestroyKey(deps: CaChangeDeps, r: ApprovalRequestRow): Promise<Executed> {
  const caId = Number(r.payload.caId);
  const { ca, keys } = await destroyApprovedKey(deps, caId, r.id).catch((err: Error) => {
    throw err instanceof KeyMustStayError ? new ApprovalExecutionError(err.message) : err;
  });
  return {
    result: { caId: ca.id, destroyedKeys: keys },
    text: `Destroyed the keys of ${ca.subject} on the HSM: ${keys.join(", ") || "(none were left)"}.`,
  };
}
