/**
 * cert-manager writes spec.duration as a Go time.Duration ("2160h0m0s",
 * "1h30m", "90m"); hsm-ca takes one number and one unit ("90d", "24h").
 */
const GO_UNITS_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  "μs": 1e-3,
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
};

/** Milliseconds, or undefined when the text is not a positive Go duration. */
export function parseGoDuration(text: string): number | undefined {
  if (!/^([0-9]+(\.[0-9]+)?(ns|us|µs|μs|ms|s|m|h))+$/.test(text)) return undefined;
  let ms = 0;
  for (const [, number, , unit] of text.matchAll(/([0-9]+(\.[0-9]+)?)(ns|us|µs|μs|ms|s|m|h)/g)) {
    ms += Number(number) * GO_UNITS_MS[unit!]!;
  }
  return ms > 0 ? ms : undefined;
}

/** hsm-ca's validity for a lifetime: the largest unit that states it exactly, else whole seconds (at least one). */
export function hsmCaValidity(ms: number): string {
  const seconds = Math.max(1, Math.floor(ms / 1000));
  for (const [unit, size] of [["d", 86_400], ["h", 3_600], ["m", 60]] as const) {
    if (seconds % size === 0) return `${seconds / size}${unit}`;
  }
  // hsm-ca's numbers have at most 7 digits: past 115 days of seconds, whole minutes are close enough.
  return seconds < 10_000_000 ? `${seconds}s` : `${Math.floor(seconds / 60)}m`;
}
