/** How the dashboard writes times: UTC, to the minute, and relative to now. */
export function utc(d: Date): string {
  return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

export function day(d: Date): string {
  return d.toISOString().slice(0, 10);
}

/** "in 3 d", "5 h ago": the largest unit that makes the number at least 1. */
export function relative(d: Date, now: Date): string {
  const ms = d.getTime() - now.getTime();
  const text = duration(Math.abs(ms));
  return ms >= 0 ? `in ${text}` : `${text} ago`;
}

export function duration(ms: number): string {
  const units: Array<[string, number]> = [
    ["d", 86_400_000],
    ["h", 3_600_000],
    ["min", 60_000],
    ["s", 1_000],
  ];
  for (const [name, size] of units) if (ms >= size) return `${Math.floor(ms / size)} ${name}`;
  return "now";
}
