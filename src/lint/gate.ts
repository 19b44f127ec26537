import { LintFailure, type LintedKind, type Violation } from "./lint-failure.ts";

/**
 * The lint gate's process-wide state: whether it runs (HSM_CA_LINT, on
 * unless turned off) and who hears about failures (the service records them
 * in the audit log and counts them in /metrics). Process-wide because the
 * builders in src/ca that call it are reached from issuance, CRL
 * publication, OCSP and the ceremonies alike, and each process has one
 * setting.
 */

/** A failed lint, as observers hear it. */
export interface LintFailureEvent {
  kind: LintedKind;
  rule: string;
  detail: string;
  about: Record<string, string | undefined>;
}

export type LintFailureListener = (event: LintFailureEvent) => void;

let enabled = true;
const listeners = new Set<LintFailureListener>();

/** HSM_CA_LINT=off turns the gate off (unsafe: malformed objects would be signed by the CA key). */
export function setLintEnabled(on: boolean): void {
  enabled = on;
}

export function lintEnabled(): boolean {
  return enabled;
}

/** Subscribes; returns the unsubscribe. */
export function onLintFailure(listener: LintFailureListener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/**
 * Reports the first violation (the one the error names) to the listeners
 * and throws: the caller signs nothing.
 */
export function refuse(kind: LintedKind, violations: Violation[], about: Record<string, string | undefined>): never {
  const first = violations[0]!;
  const detail = violations.length > 1 ? `${first.detail} (and ${violations.length - 1} more: ${violations.slice(1).map((v) => v.rule).join(", ")})` : first.detail;
  const event: LintFailureEvent = { kind, rule: first.rule, detail, about };
  for (const listener of listeners) {
    try {
      listener(event);
    } catch {
      // a listener never hides the failure
    }
  }
  throw new LintFailure(kind, first.rule, detail, about);
}
