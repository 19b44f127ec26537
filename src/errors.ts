/**
 * Why a request was refused, independent of the door it came through. Each
 * door says it in its own words, in one place: src/api/problem.ts as an
 * RFC 9457 problem with an HTTP status, src/acme/problem.ts as an ACME
 * error, the CLI as one line.
 *
 * Each kind says whose the refusal is: "refused" (the request's: trying it
 * again unchanged gets the same answer), "deferred" (accepted, but it waits
 * for someone), or "unavailable" (the CA's: it cannot serve now, and trying
 * again later may work), or "failed" (the CA's, and not a matter of time:
 * the lint gate found what it was about to sign malformed, so it signed
 * nothing; a bug or a broken template, for the operator to look at).
 */
const REJECTION_KINDS = {
  "malformed-request": "refused",
  "bad-csr": "refused",
  "bad-csr-signature": "refused",
  "bad-public-key": "refused",
  "rejected-identifier": "refused",
  "bad-subject": "refused",
  "bad-validity": "refused",
  "bad-revocation-reason": "refused",
  "key-compromised": "refused",
  "unknown-profile": "refused",
  "not-found": "refused",
  "payload-too-large": "refused",
  "unsupported-media-type": "refused",
  "approval-required": "deferred",
  "not-pending": "refused",
  "issuer-path-length": "refused",
  "wrong-profile-kind": "refused",
  "rate-limited": "refused",
  "hsm-busy": "unavailable",
  unauthorized: "refused",
  forbidden: "refused",
  "hsm-unavailable": "unavailable",
  "database-unavailable": "unavailable",
  "ca-not-ready": "unavailable",
  "shutting-down": "unavailable",
  "lint-failed": "failed",
} as const satisfies Record<string, "refused" | "deferred" | "unavailable" | "failed">;

export type RejectionKind = keyof typeof REJECTION_KINDS;

/** The CA cannot serve the request now (HSM or database down or busy, no issuer, stopping); later it may. */
export function isUnavailable(kind: RejectionKind): boolean {
  return REJECTION_KINDS[kind] === "unavailable";
}

/** The CA failed at something trying again will not fix (the lint gate refused to sign). */
export function isCaFailure(kind: RejectionKind): boolean {
  return REJECTION_KINDS[kind] === "failed";
}

export class Rejection extends Error {
  /** When trying again makes sense, in seconds (a rate limit's wait, a busy HSM's queue); unset: no hint. */
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
