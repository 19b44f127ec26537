import { parseArgs } from "node:util";
import { mayIssue } from "../../auth/api-tokens.ts";
import { approvalsRequiredFor, requestIssuance } from "../../approvals/issue.ts";
import { approvalCount, getApprovalRequest, type RequestState } from "../../approvals/requests.ts";
import { issueCertificate } from "../../issuance/issue-certificate.ts";
import { countIssuance } from "../../metrics/issuance-outcome.ts";
import { approvalDepsOfEnv, principalOf } from "../approval-env.ts";
import { CliError, type CommandEnv } from "../command-env.ts";

export const issueUsage = `hsm-ca issue --profile NAME --csr FILE [--validity 30d] [--out FILE] [--wait SECONDS]
hsm-ca issue --request ID [--out FILE] [--wait SECONDS]
  Asks for a certificate as the API token in HSM_CA_TOKEN (or --token-file FILE). It is written
  (with its chain) to --out or stdout at once, or, for a profile that needs approvals, once enough
  admins have approved: until then the request id and its approvals are printed (exit code 3).
  --wait polls that long for the outcome; --request ID picks up a request made earlier.
  Exit codes: 0 certificate written, 3 still waiting for approval, 1 rejected, expired or failed.`;

/** Exit code while a request waits for approval: nothing was written to --out. */
export const PENDING_EXIT_CODE = 3;
const MAX_WAIT_SECONDS = 3600;
const POLL_MS = 500;

export async function issueCommand(args: string[], env: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      profile: { type: "string" },
      // --csr FILE is read by the CLI process and arrives here as --csr-pem (src/cli/local-inputs.ts).
      "csr-pem": { type: "string" },
      validity: { type: "string" },
      request: { type: "string" },
      wait: { type: "string" },
      "token-value": { type: "string" },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length) throw new CliError(`unexpected argument "${positionals[0]}"; usage:\n${issueUsage}`);
  const waitSeconds = values.wait === undefined ? 0 : Number(values.wait);
  if (!Number.isInteger(waitSeconds) || waitSeconds < 0 || waitSeconds > MAX_WAIT_SECONDS) throw new CliError(`--wait takes whole seconds, 0-${MAX_WAIT_SECONDS}`);
  const principal = await principalOf(env, values["token-value"], ["admin", "issuer"]);
  const deps = await approvalDepsOfEnv(env);

  let state: RequestState;
  if (values.request !== undefined) {
    if (values.profile || values["csr-pem"] || values.validity) throw new CliError("--request takes no --profile, --csr or --validity");
    state = await getApprovalRequest(deps, values.request, principal);
    if (state.request.kind !== "issue") throw new CliError(`request ${values.request} is a ${state.request.kind} request, not a certificate request`);
  } else {
    const profile = values.profile;
    const csrPem = values["csr-pem"];
    if (!profile || !csrPem) throw new CliError(`give --profile and --csr (or --request ID); usage:\n${issueUsage}`);
    // Counted only inside the service (over the control socket), and never under a made-up profile name.
    const metrics = deps.profiles.has(profile) ? deps.metrics : undefined;
    if (approvalsRequiredFor(deps, profile) === 0) {
      if (deps.profiles.has(profile) && !mayIssue(principal, profile)) throw new CliError(`token ${principal.tokenId} may not issue from profile ${profile}`, 1);
      const issuer = await deps.issuer();
      const row = await countIssuance(metrics, "cli", profile, () =>
        issueCertificate(
          { db: deps.db, profiles: deps.profiles, issuer, revocation: deps.revocation, audit: deps.audit },
          { csrPem, profile, validity: values.validity, requestedBy: principal.tokenId },
        ),
      );
      env.out(`${row.certificatePem.trim()}\n${issuer.chainPem.trim()}`);
      env.err(`Issued ${row.serial} (${row.subject || row.sans.join(", ")}), valid until ${row.notAfter.toISOString()}.`);
      return 0;
    }
    state = await countIssuance(
      metrics,
      "cli",
      profile,
      () => requestIssuance(deps, { csrPem, profile, validity: values.validity, principal, ttlMs: env.config.approvals.ttlMs }),
      () => "pending_approval",
    );
  }

  const deadline = Date.now() + waitSeconds * 1000;
  while (isOpen(state) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, Math.min(POLL_MS, Math.max(0, deadline - Date.now()))));
    state = await getApprovalRequest(deps, state.request.id, principal);
  }
  return report(state, env);
}

function isOpen(s: RequestState): boolean {
  return s.request.status === "pending" || s.request.status === "approved";
}

function report(s: RequestState, env: CommandEnv): number {
  const r = s.request;
  if (r.status === "done" && s.certificate) {
    env.out(`${s.certificate.certificatePem.trim()}${s.chainPem ? `\n${s.chainPem.trim()}` : ""}`);
    env.err(`Request ${r.id}: issued ${s.certificate.serial} after ${r.required} approvals, valid until ${s.certificate.notAfter.toISOString()}.`);
    return 0;
  }
  if (isOpen(s)) {
    const count = approvalCount(s);
    env.out(`request ${r.id} ${r.status}: ${count} of ${r.required} approvals, expires ${r.expiresAt.toISOString()}`);
    env.err(
      `Admins other than the requester approve it with: hsm-ca approve ${r.id}\n` +
        `Then fetch the certificate with: hsm-ca issue --request ${r.id} --out cert.pem (or add --wait SECONDS)`,
    );
    return PENDING_EXIT_CODE;
  }
  const why = r.status === "failed" ? `: ${String(r.result?.detail ?? "see the service log")}` : r.status === "expired" ? ` at ${r.expiresAt.toISOString()}` : "";
  throw new CliError(`request ${r.id} was ${r.status}${why}`, 1);
}
