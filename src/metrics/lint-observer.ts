import type { LintFailureListener } from "../lint/gate.ts";
import type { Metrics } from "./catalogue.ts";

/**
 * What the service does with a lint refusal: an audit entry (lint.failed,
 * result error, naming the rule and what would have been signed) and a
 * count in hsmca_lint_failures_total. The rule names are the gate's own
 * fixed set, so they are bounded as labels.
 */
export function lintFailureRecorder(
  audit: { record(entry: { kind: string; subject?: string | null; result?: "ok" | "error"; details?: Record<string, unknown> }): void },
  metrics: Pick<Metrics, "lintFailures">,
): LintFailureListener {
  return (event) => {
    metrics.lintFailures.inc({ rule: event.rule, kind: event.kind });
    audit.record({
      kind: "lint.failed",
      subject: event.about.serial ?? event.about.crl_number ?? null,
      result: "error",
      details: { rule: event.rule, linted: event.kind, detail: event.detail, ...event.about },
    });
  };
}
