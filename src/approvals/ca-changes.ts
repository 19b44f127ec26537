import { destroyApprovedKey } from "../ceremony/destroy-retired-keys.ts";
import { formatTranscript } from "../ceremony/init-hierarchy.ts";
import { rotateIntermediate, type RotationPlan } from "../ceremony/rotate.ts";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import type { ApprovalRequestRow } from "../store/approvals.ts";
import { ApprovalExecutionError, type ApprovalDeps } from "./context.ts";
import { createApprovalRequest, type RequestState } from "./requests.ts";

/**
 * Changes to the CA hierarchy outside the schedule, gated by
 * HSM_CA_CA_CHANGE_APPROVALS: a manual rotation ("rotate") and the
 * destruction of a retired key ("destroy-key", requested by the clean-up
 * job in src/ceremony/destroy-retired-keys.ts).
 */
export interface RotatePayload {
  /** The intermediate the approvers agree to retire; if another rotation happened meanwhile, nothing is done. */
  retire: { id: number; subject: string; keyLabel: string };
  subject: string;
  algorithm: CaKeyAlgorithm;
  validityDays: number;
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
  };
  return createApprovalRequest(deps, { kind: "rotate", payload: { ...payload }, requestedBy: input.requestedBy, required: input.required, ttlMs: input.ttlMs });
}

export async function executeRotation(deps: ApprovalDeps, r: ApprovalRequestRow) {
  const p = r.payload as unknown as RotatePayload;
  const done = await rotateIntermediate(
    deps.hsm,
    deps.db,
    { intermediateAlgorithm: p.algorithm, intermediateValidityDays: p.validityDays },
    deps.revocation?.urls,
    `approved request ${r.id}`,
    async (_tx, plan) => plan.current.id === p.retire.id,
  );
  if (!done) throw new ApprovalExecutionError(`${p.retire.subject} is no longer the active intermediate: another rotation happened since request ${r.id}`);
  await deps.hierarchyChanged?.();
  return {
    result: { caId: done.row.id, subject: done.row.subject, keyLabel: done.row.keyLabel, retired: p.retire.id },
    text: `${formatTranscript(done.transcript)}\n\nRetired ${p.retire.subject}: it no longer issues, and answers for its certificates until they expire.`,
  };
}

export async function executeDestroyKey(deps: ApprovalDeps, r: ApprovalRequestRow) {
  const caId = Number(r.payload.caId);
  const { ca, keys } = await destroyApprovedKey(deps, caId, r.id);
  return {
    result: { caId: ca.id, destroyedKeys: keys },
    text: `Destroyed the keys of ${ca.subject} on the HSM: ${keys.join(", ") || "(none were left)"}.`,
  };
}
