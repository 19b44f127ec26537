import type { KeyEvents } from "../hsm/events.ts";
import type { Metrics } from "./catalogue.ts";

/**
 * Counts every key use the HSM reports (sign, generate, destroy, encrypt, decrypt: latency
 * and result per key label) and every time it becomes unavailable. Returns
 * the unsubscribe.
 */
export function observeHsm(metrics: Metrics, hsm: KeyEvents): () => void {
  const offKeyUse = hsm.onKeyUse((e) => {
    metrics.hsmOperationSeconds.observe({ key_label: e.label, operation: e.operation }, e.ms / 1000);
    metrics.hsmOperations.inc({ key_label: e.label, operation: e.operation, result: e.ok ? "ok" : "error" });
  });
  const offAvailability = hsm.onAvailability((e) => {
    if (!e.available) metrics.hsmUnavailable.inc();
  });
  return () => {
    offKeyUse();
    offAvailability();
  };
}
