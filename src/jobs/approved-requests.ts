import { executeApprovedCaChange, isCaChange, type CaChangeDeps } from "../approvals/ca-changes.ts";
import type { Execution } from "../approvals/execute.ts";
import { listApprovalRequests } from "../store/approvals.ts";
import type { Job } from "./job.ts";

/** How many approved requests one pass looks at; more wait for the next. */
const BATCH = 100;

/**
 * One pass: carries out every approved CA change (a rotation, a key
 * destruction), oldest first. Decisions only record approvals
 * (src/approvals/decisions.ts), so that no key is generated or destroyed
 * inside an HTTP request; this is where that work runs. Every replica may
 * run it: each request is carried out once (executeApprovedCaChange
 * locks it and checks it is still approved). Returns what ran here.
 */
export async function executeApprovedRequests(deps: CaChangeDeps): Promise<Execution[]> {
  const approved = (await listApprovalRequests(deps.db, { status: "approved", limit: BATCH })).filter((r) => isCaChange(r.kind)).reverse();
  const executed: Execution[] = [];
  for (const request of approved) {
    const execution = await executeApprovedCaChange(deps, request.id);
    if (execution) executed.push(execution);
  }
  return executed;
}

export const APPROVED_REQUESTS_JOB = "approved-requests";

/**
 * Every 2 s on every replica (and at once after an approval here): any
 * replica may carry out an approved change, each exactly once, so the
 * approving replica need not wait for the leader.
 */
export function approvedRequestsJob(deps: CaChangeDeps): Job {
  return {
    name: APPROVED_REQUESTS_JOB,
    runsOn: "every-replica",
    schedule: { everyMs: 2_000 },
    actor: "system:approvals",
    failure: "cannot carry out approved requests",
    run: async () => {
      await executeApprovedRequests(deps);
    },
  };
}
