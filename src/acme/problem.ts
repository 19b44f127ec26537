/**
 * ACME errors (RFC 8555 §6.7): problem documents whose type is
 * urn:ietf:params:acme:error:<type>, with subproblems per identifier where
 * the RFC has them.
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
