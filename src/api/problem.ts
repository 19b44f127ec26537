import type { Context } from "hono";
import type { Rejection, RejectionKind } from "../errors.ts";

export const PROBLEM_TYPE_PREFIX = "urn:hsm-ca:problem:";

/** What the REST API can answer with: a refusal's kind, or "internal" for what nobody refused (a bug). */
export type ProblemKind = RejectionKind | "internal";

/**
 * Each kind's HTTP status and RFC 9457 title: the one place the REST API
 * (and the dashboard's JSON answers) turn a kind into HTTP. The type of a
 * problem is PROBLEM_TYPE_PREFIX + its kind.
 */
const PROBLEMS: Record<ProblemKind, { status: number; title: string }> = {
  "malformed-request": { status: 400, title: "The request is malformed" },
  "bad-csr": { status: 400, title: "The CSR cannot be parsed" },
  "bad-csr-signature": { status: 400, title: "The CSR's signature does not verify" },
  "bad-public-key": { status: 400, title: "The CSR's public key is not accepted" },
  "rejected-identifier": { status: 400, title: "A requested name is not allowed by the profile" },
  "bad-subject": { status: 400, title: "The CSR's subject is not accepted by the profile" },
  "bad-validity": { status: 400, title: "The requested validity is not allowed" },
  "bad-revocation-reason": { status: 400, title: "The revocation reason is not accepted" },
  "key-compromised": { status: 400, title: "The public key was revoked for key compromise" },
  "unknown-profile": { status: 404, title: "No such certificate profile" },
  "not-found": { status: 404, title: "Not found" },
  "payload-too-large": { status: 413, title: "The request body is too large" },
  "unsupported-media-type": { status: 415, title: "The request body is not JSON" },
  "approval-required": { status: 202, title: "The request waits for approval" },
  "not-pending": { status: 409, title: "The request is no longer pending" },
  "issuer-path-length": { status: 409, title: "The issuing CA's path length does not allow this CA certificate" },
  "wrong-profile-kind": { status: 400, title: "The profile issues the other kind of certificate (CA or end-entity)" },
  "rate-limited": { status: 429, title: "Too many requests from this client" },
  "hsm-busy": { status: 503, title: "The HSM queue is full" },
  unauthorized: { status: 401, title: "A valid API token is required" },
  forbidden: { status: 403, title: "The API token may not do this" },
  "hsm-unavailable": { status: 503, title: "The HSM is not available" },
  "database-unavailable": { status: 503, title: "The database is not available" },
  "ca-not-ready": { status: 503, title: "The CA hierarchy is not set up" },
  "shutting-down": { status: 503, title: "The service is shutting down" },
  "lint-failed": { status: 500, title: "The CA refused to sign what it built: it broke a lint rule" },
  internal: { status: 500, title: "Internal error" },
};

export function problemStatus(kind: ProblemKind): number {
  return PROBLEMS[kind].status;
}

/** An RFC 9457 problem document. */
export function problem(c: Context, kind: ProblemKind, detail: string, extra: Record<string, unknown> = {}): Response {
  const { status, title } = PROBLEMS[kind];
  return c.body(
    JSON.stringify({ type: PROBLEM_TYPE_PREFIX + kind, title, status, detail, instance: c.req.path, ...extra }),
    status as 400,
    { "content-type": "application/problem+json" },
  );
}

/** A refusal as its problem, with Retry-After when the refusal says when to try again. */
export function rejectionProblem(c: Context, err: Rejection): Response {
  if (err.retryAfterSeconds !== undefined) c.header("retry-after", String(err.retryAfterSeconds));
  // A lint failure names its rule as a member of its own, for tools that sort failures by it.
  const rule = (err as Rejection & { rule?: unknown }).rule;
  return problem(c, err.kind, err.detail, typeof rule === "string" ? { rule } : {});
}
