/**
 * Why a request was refused, independent of the door it came through: the
 * REST API turns these into RFC 9457 problems, the CLI into one-line errors.
 */
export const REJECTIONS = {
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
  "rate-limited": { status: 429, title: "Too many requests from this client" },
  "hsm-busy": { status: 503, title: "The HSM queue is full" },
  unauthorized: { status: 401, title: "A valid API token is required" },
  forbidden: { status: 403, title: "The API token may not do this" },
  "hsm-unavailable": { status: 503, title: "The HSM is not available" },
  "database-unavailable": { status: 503, title: "The database is not available" },
  "ca-not-ready": { status: 503, title: "The CA hierarchy is not set up" },
  "shutting-down": { status: 503, title: "The service is shutting down" },
} as const;

export type RejectionKind = keyof typeof REJECTIONS;

export class Rejection extends Error {
  /** When to try again (the REST API sends it as Retry-After), e.g. for rate-limited. */
  readonly retryAfterSeconds?: number;

  constructor(
    readonly kind: RejectionKind,
    readonly detail: string,
    opts: { retryAfterSeconds?: number } = {},
  ) {
    super(detail);
    if (opts.retryAfterSeconds !== undefined) this.retryAfterSeconds = opts.retryAfterSeconds;
  }
}
