import type { Context } from "hono";
import { isUnavailable, Rejection, type RejectionKind } from "../errors.ts";

/**
 * ACME errors (RFC 8555 §6.7): problem documents whose type is
 * urn:ietf:params:acme:error:<type>, with subproblems per identifier where
 * the RFC has them. This file is the one place the ACME server turns an
 * error into HTTP: the status of each type, what a Rejection from the layers
 * below becomes, and Retry-After.
 */
export const ACME_ERRORS = {
  accountDoesNotExist: 400,
  alreadyReplaced: 409,
  alreadyRevoked: 400,
  badCSR: 400,
  badNonce: 400,
  badPublicKey: 400,
  badRevocationReason: 400,
  badSignatureAlgorithm: 400,
  caa: 403,
  compound: 403,
  connection: 400,
  dns: 400,
  externalAccountRequired: 400,
  incorrectResponse: 403,
  invalidContact: 400,
  malformed: 400,
  orderNotReady: 403,
  rateLimited: 429,
  rejectedIdentifier: 400,
  serverInternal: 500,
  tls: 400,
  unauthorized: 403,
  unsupportedContact: 400,
  unsupportedIdentifier: 400,
  userActionRequired: 403,
} as const;

export type AcmeErrorType = keyof typeof ACME_ERRORS;

export const ACME_ERROR_PREFIX = "urn:ietf:params:acme:error:";

export interface AcmeIdentifier {
  type: "dns" | "ip";
  value: string;
}

export interface Subproblem {
  type: AcmeErrorType;
  detail: string;
  identifier?: AcmeIdentifier;
}

/** The JSON form of a problem, as stored on challenges and orders and sent to clients. */
export interface ProblemDocument {
  type: string;
  detail: string;
  status: number;
  subproblems?: Array<{ type: string; detail: string; identifier?: AcmeIdentifier }>;
  algorithms?: string[];
}

export class AcmeProblem extends Error {
  constructor(
    readonly type: AcmeErrorType,
    readonly detail: string,
    readonly extra: { subproblems?: Subproblem[]; algorithms?: string[]; status?: number; retryAfterSeconds?: number } = {},
  ) {
    super(detail);
  }

  get status(): number {
    return this.extra.status ?? ACME_ERRORS[this.type];
  }

  toDocument(): ProblemDocument {
    const doc: ProblemDocument = { type: ACME_ERROR_PREFIX + this.type, detail: this.detail, status: this.status };
    if (this.extra.subproblems?.length) {
      doc.subproblems = this.extra.subproblems.map((s) => ({ ...s, type: ACME_ERROR_PREFIX + s.type }));
    }
    if (this.extra.algorithms) doc.algorithms = this.extra.algorithms;
    return doc;
  }
}

/** A refused CSR at finalize (§7.4), as the ACME error type the RFC has for it; other kinds are the server's. */
export const CSR_REFUSALS: Partial<Record<RejectionKind, AcmeErrorType>> = {
  "bad-csr": "badCSR",
  "bad-csr-signature": "badCSR",
  "bad-subject": "badCSR",
  "bad-validity": "badCSR",
  "bad-public-key": "badPublicKey",
  "rejected-identifier": "rejectedIdentifier",
};

/** A CA that cannot serve now says when to try again; this when the refusal names no time. */
const UNAVAILABLE_RETRY_AFTER_SECONDS = 5;

/**
 * ACME clients read only ACME problem documents: anything else that goes
 * wrong on an ACME route is reported as one, with the right status (503
 * and Retry-After when the CA is unavailable, 500 otherwise).
 */
export function toAcmeProblem(err: Error): AcmeProblem {
  if (err instanceof AcmeProblem) return err;
  if (err instanceof Rejection) {
    if (isUnavailable(err.kind)) {
      return new AcmeProblem("serverInternal", err.detail, { status: 503, retryAfterSeconds: err.retryAfterSeconds ?? UNAVAILABLE_RETRY_AFTER_SECONDS });
    }
    return new AcmeProblem("serverInternal", err.detail, { status: 500 });
  }
  return new AcmeProblem("serverInternal", "the server could not complete the request; try again later", { status: 500 });
}

/** The response for a problem: its document as application/problem+json, with Retry-After when it has one. */
export function acmeProblemResponse(c: Context, p: AcmeProblem): Response {
  if (p.extra.retryAfterSeconds !== undefined) c.header("retry-after", String(p.extra.retryAfterSeconds));
  return c.body(JSON.stringify(p.toDocument()), p.status as 400, { "content-type": "application/problem+json" });
}
