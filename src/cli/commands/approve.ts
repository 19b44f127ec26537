import { parseArgs } from "node:util";
import { executeApprovedCaChange, isCaChange } from "../../approvals/ca-changes.ts";
import { decideApprovalRequest, type Decision } from "../../approvals/decisions.ts";
import { approvalCount, stateOf } from "../../approvals/requests.ts";
import { approvalRequestById } from "../../store/approvals.ts";
import { approvalDepsOfEnv, principalOf } from "../approval-env.ts";
import { CliError, type CommandEnv } from "../command-env.ts";

export const approveUsage = `hsm-ca approve ID
hsm-ca reject ID
  Approves or rejects a pending request as the admin token in HSM_CA_TOKEN (or --token-file
  FILE); never your own request. The approval that reaches the number required runs it: the
  certificate is issued, the intermediate rotated, the retired key destroyed. One rejection ends it.`;

export const approveCommand = (args: string[], env: CommandEnv) => decideCommand("approve", args, env);
export const rejectCommand = (args: string[], env: CommandEnv) => decideCommand("reject", args, env);

async function decideCommand(decision: Decision, args: string[], env: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { "token-value": { type: "string" } }, allowPositionals: true, strict: true });
  if (positionals.length !== 1) throw new CliError(`give one request id; usage:\n${approveUsage}`);
  const id = positionals[0]!;
  const principal = await principalOf(env, values["token-value"], ["admin"]);
  const deps = await approvalDepsOfEnv(env);
  let { state, execution } = await decideApprovalRequest(deps, id, principal, decision);
  if (state.request.status === "approved" && isCaChange(state.request.kind)) {
    // The decision only recorded it; an operator at the CLI carries the CA change out now, as a ceremony
    // (or finds that the service's approved-requests job just did).
    execution = (await executeApprovedCaChange({ ...deps, hsm: env.hsm() }, id)) ?? { request: (await approvalRequestById(deps.db, id))! };
    state = await stateOf(deps.db, execution.request);
  }
  const r = state.request;
  if (decision === "reject") {
    env.out(`Rejected request ${id} (${r.kind}) as ${principal.tokenId}: it will not run.`);
    return 0;
  }
  const count = approvalCount(state);
  env.out(`Approved request ${id} (${r.kind}) as ${principal.tokenId}: ${count} of ${r.required} approvals.`);
  if (!execution) {
    env.out(`Waiting for ${r.required - count} more admin${r.required - count === 1 ? "" : "s"} (until ${r.expiresAt.toISOString()}).`);
    return 0;
  }
  if (execution.text) env.out(execution.text);
  if (r.status === "failed") {
    env.err(`hsm-ca approve: the approved request failed: ${String(r.result?.detail ?? "see the service log")}`);
    return 1;
  }
  if (r.kind === "issue") env.out(`The requester fetches it with: hsm-ca issue --request ${id} --out cert.pem`);
  return 0;
}
