import { mayIssue, type Principal } from "../auth/api-tokens.ts";
import { Rejection } from "../errors.ts";
import { checkIssueRequest, type CertificateKind } from "../issuance/issue-certificate.ts";
import type { ApprovalDeps } from "./context.ts";
import { createApprovalRequest, type RequestState } from "./requests.ts";

export interface IssueSubmission {
  csrPem: string;
  profile: string;
  validity?: string;
  /** The kind of certificate asked for (REST's isCA); checked now, as issuance would. */
  kind?: CertificateKind;
  principal: Principal;
  ttlMs: number;
}

/** How many approvals a profile's certificates need; 0 issues at once. */
export function approvalsRequiredFor(deps: Pick<ApprovalDeps, "profiles">, profile: string): number {
  return deps.profiles.get(profile)?.approvals.required ?? 0;
}

/**
 * A request for a certificate from a profile with `approvals`: checked now
 * exactly as issuance would check it (a bad CSR, name or validity is
 * refused and nothing is stored), then stored as a pending "issue" request
 * with payload {csr, profile, validity}. It is issued when enough admins
 * approve (src/approvals/decisions.ts), checked once more then.
 */
export async function requestIssuance(deps: ApprovalDeps, input: IssueSubmission): Promise<RequestState> {
  const profile = deps.profiles.get(input.profile);
  if (!profile) throw new Rejection("unknown-profile", `no profile "${input.profile}"; known: ${[...deps.profiles.keys()].join(", ")}`);
  if (!mayIssue(input.principal, profile.name)) throw new Rejection("forbidden", `this token may not issue from profile ${profile.name}`);
  if (profile.approvals.required < 1) throw new Error(`profile ${profile.name} needs no approval`);
  await checkIssueRequest({ db: deps.db, profiles: deps.profiles, issuer: await deps.issuer() }, { csrPem: input.csrPem, profile: profile.name, validity: input.validity, kind: input.kind });
  return createApprovalRequest(deps, {
    kind: "issue",
    payload: { csr: input.csrPem, profile: profile.name, ...(input.validity ? { validity: input.validity } : {}) },
    requestedBy: input.principal.tokenId,
    required: profile.approvals.required,
    ttlMs: input.ttlMs,
  });
}
