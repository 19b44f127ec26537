import { formatDuration } from "../policy/duration.ts";

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A Vault ttl as hsm-ca's validity ("90s", "30m", "24h", "365d"): Vault takes
 * seconds as a number or a string ("3600"), and Go durations ("720h",
 * "2160h0m0s" as cert-manager sends them, "1h30m"). Undefined when it is
 * none of these; null for an empty or zero ttl (the profile's default).
 */
export function validityOfTtl(ttl: unknown): string | null | undefined {
  if (ttl === undefined || ttl === null || ttl === "" || ttl === 0 || ttl === "0") return null;
  let ms: number;
  if (typeof ttl === "number") {
    if (!Number.isInteger(ttl) || ttl < 0) return undefined;
    ms = ttl * 1000;
  } else if (typeof ttl === "string") {
    const text = ttl.trim();
    if (/^[0-9]{1,10}$/.test(text)) ms = Number(text) * 1000;
    else {
      const parts = [...text.matchAll(/([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h|d)/g)];
      if (!parts.length || parts.map((p) => p[0]).join("") !== text) return undefined;
      ms = parts.reduce((sum, p) => sum + Number(p[1]) * UNIT_MS[p[2]!]!, 0);
    }
  } else return undefined;
  // Whole seconds: certificate times have no finer grain.
  ms = Math.round(ms / 1000) * 1000;
  if (ms === 0) return null;
  return formatDuration(ms);
}
