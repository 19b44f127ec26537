/** Lifetimes are written "90s", "30m", "24h" or "365d": one number, one unit. */
const UNITS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

export function parseDuration(text: string): number | undefined {
  const m = /^([1-9][0-9]{0,6})(s|m|h|d)$/.exec(text.trim());
  if (!m) return undefined;
  return Number(m[1]) * UNITS[m[2] as keyof typeof UNITS];
}

export function formatDuration(ms: number): string {
  for (const [unit, size] of [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000]] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${Math.round(ms / 1000)}s`;
}
