import { parseArgs } from "node:util";
import { approvalCount, getApprovalRequest, listApprovalRequestStates, summaryOf, type RequestState } from "../../approvals/requests.ts";
import { approvalDepsOfEnv, principalOf } from "../approval-env.ts";
import { CliError, type CommandEnv } from "../command-env.ts";

export const requestsUsage = `hsm-ca requests [--status pending|approved|rejected|expired|done|failed] [--kind issue|rotate|destroy-key] [--limit N]
hsm-ca requests ID
  Lists the requests waiting for (or done with) M-of-N approval, newest first, or shows one
  with its approvals. Acts as the API token in HSM_CA_TOKEN (or --token-file FILE): admin or
  auditor for the list; a requester may show its own request.`;

const STATUSES = ["pending", "approved", "rejected", "expired", "done", "failed"] as const;
const KINDS = ["issue", "rotate", "destroy-key"] as const;

export async function requestsCommand(args: string[], env: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { status: { type: "string" }, kind: { type: "string" }, limit: { type: "string" }, "token-value": { type: "string" } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length > 1) throw new CliError(`give at most one request id; usage:\n${requestsUsage}`);
  const deps = await approvalDepsOfEnv(env);
  if (positionals.length === 1) {
    const principal = await principalOf(env, values["token-value"], ["admin", "auditor", "issuer"]);
    env.out(describeRequest(await getApprovalRequest(deps, positionals[0]!, principal), { long: true }));
    return 0;
  }
  await principalOf(env, values["token-value"], ["admin", "auditor"]);
  const status = values.status as (typeof STATUSES)[number] | undefined;
  if (status && !STATUSES.includes(status)) throw new CliError(`--status must be one of ${STATUSES.join(", ")}`);
  const kind = values.kind as (typeof KINDS)[number] | undefined;
  if (kind && !KINDS.includes(kind)) throw new CliError(`--kind must be one of ${KINDS.join(", ")}`);
  const limit = values.limit === undefined ? 100 : Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw new CliError("--limit must be 1-500");
  const states = await listApprovalRequestStates(deps, { status, kind, limit });
  if (states.length === 0) env.err(`No ${status ?? ""}${status ? " " : ""}requests.`);
  for (const s of states) env.out(describeRequest(s));
  return 0;
}

/** One line per request, or a block with its approvals and result. */
export function describeRequest(s: RequestState, opts: { long?: boolean } = {}): string {
  const r = s.request;
  const about = Object.entries(summaryOf(r))
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : String(v)}`)
    .join(" ");
  const line = `${r.id}  ${r.kind.padEnd(11)} ${r.status.padEnd(8)} ${approvalCount(s)}/${r.required} approvals  by ${r.requestedBy}  expires ${r.expiresAt.toISOString()}  ${about}`;
  if (!opts.long) return line;
  const lines = [line];
  for (const a of s.approvals) lines.push(`  ${a.decision === "approve" ? "approved" : "rejected"} by ${a.approver} at ${a.at.toISOString()}`);
  if (r.result) lines.push(`  result ${JSON.stringify(r.result)}`);
  return lines.join("\n");
}
