import { Rejection } from "../errors.ts";

/** What the gate lints: each kind of object a CA key signs. */
export type LintedKind = "certificate" | "crl" | "ocsp-response";

/** One broken rule: its name (stable, a metric label) and what was wrong. */
export interface Violation {
  rule: string;
  detail: string;
}

/**
 * The gate found something wrong with what a CA key was about to sign:
 * nothing was signed. It is the CA's fault (a bug, or a template no profile
 * makes), never the request's: REST answers 500 lint-failed, ACME
 * serverInternal.
 */
export class LintFailure extends Rejection {
  constructor(
    readonly lintedKind: LintedKind,
    readonly rule: string,
    readonly violationDetail: string,
    /** What the object would have been: subject, serial, CRL number, issuer; for the audit log. */
    readonly about: Record<string, string | undefined>,
  ) {
    super("lint-failed", `lint before signing refused the ${lintedKind} (rule ${rule}): ${violationDetail}; nothing was signed`);
  }
}
