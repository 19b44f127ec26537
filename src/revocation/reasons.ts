import { CRL_REASONS } from "../ca/crl-reasons.ts";

export { CRL_REASONS };

export type CrlReasonName = keyof typeof CRL_REASONS;

/**
 * Reasons a subscriber or admin may give for an end-entity certificate.
 * CA and AA compromise concern CAs; hold and removeFromCRL would need
 * un-revoking, which this CA does not do.
 */
export const SUBSCRIBER_REASONS: readonly number[] = [0, 1, 3, 4, 5, 9];

export const KEY_COMPROMISE = CRL_REASONS.keyCompromise;

/** A reason given as a name ("keyCompromise") or a number ("1"); undefined when it is neither. */
export function parseReason(value: unknown): number | undefined {
  if (typeof value === "number" && Number.isInteger(value)) return value;
  if (typeof value !== "string") return undefined;
  if (/^[0-9]{1,2}$/.test(value)) return Number(value);
  const byName = Object.entries(CRL_REASONS).find(([name]) => name.toLowerCase() === value.toLowerCase());
  return byName?.[1];
}

export function reasonName(code: number): string {
  return Object.entries(CRL_REASONS).find(([, v]) => v === code)?.[0] ?? String(code);
}
