import { isCaFailure, isUnavailable, Rejection } from "../errors.ts";
import type { Metrics } from "./catalogue.ts";

/** The door a certificate request came through. */
export type IssuanceSource = "rest" | "acme" | "approval" | "cli" | "vault";
export type IssuanceOutcome = "issued" | "refused" | "failed" | "pending_approval";

/**
 * Runs one certificate request that reached issuance and counts how it
 * ended, by profile: issued (or pending_approval, as outcomeOf says), refused
 * (a Rejection other than the CA being unavailable: the request's fault),
 * or failed (the CA's: HSM or database down, no issuer, a bug). The result or the error passes through
 * unchanged. Callers pass a profile that exists: a name a client made up
 * never becomes a label.
 */
export async function countIssuance<T>(
  metrics: Pick<Metrics, "issuance"> | undefined,
  source: IssuanceSource,
  profile: string,
  work: () => Promise<T>,
  outcomeOf: (result: T) => IssuanceOutcome = () => "issued",
): Promise<T> {
  try {
    const result = await work();
    metrics?.issuance.inc({ profile, source, outcome: outcomeOf(result) });
    return result;
  } catch (err) {
    metrics?.issuance.inc({ profile, source, outcome: isRefusal(err) ? "refused" : "failed" });
    throw err;
  }
}

/** Issuance throws Rejections (refusals, or the CA unavailable) and, when something breaks, anything else. */
function isRefusal(err: unknown): boolean {
  return err instanceof Rejection && !isUnavailable(err.kind) && !isCaFailure(err.kind);
}
