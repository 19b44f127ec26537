/**
 * Request rate limits per principal (an API token, an ACME account): a token
 * bucket each, in memory. Every replica counts on its own, so N replicas
 * behind a balancer allow up to N times the rate: these limits protect a
 * process from one client, they are not a quota.
 */
import { Rejection } from "../errors.ts";

/** Sustained rate and burst size; null: no limit. */
export type RateSpec = { perSecond: number; burst: number } | null;

const UNIT_SECONDS = { s: 1, m: 60, h: 3600 } as const;

/**
 * "RATE/UNIT" with an optional " burst N": "50/s", "50/s burst 100",
 * "600/m". Without a burst the bucket holds one unit's worth (50 for "50/s").
 * "off" turns the limit off. Undefined when the text does not parse.
 */
export function parseRateSpec(text: string): RateSpec | undefined {
  const t = text.trim().toLowerCase();
  if (t === "off") return null;
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*\/\s*(s|m|h)(?:\s+burst\s+([0-9]+))?$/.exec(t);
  if (!m) return undefined;
  const count = Number(m[1]);
  const burst = m[3] === undefined ? Math.ceil(count) : Number(m[3]);
  if (!(count > 0) || !(burst >= 1)) return undefined;
  return { perSecond: count / UNIT_SECONDS[m[2] as keyof typeof UNIT_SECONDS], burst };
}

/** Buckets kept before idle (full) ones are dropped. */
const SWEEP_ABOVE = 10_000;

/** One token bucket per key. take() is synchronous: no await between check and spend. */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    readonly spec: RateSpec,
    private readonly clock: () => number = () => performance.now(),
  ) {}

  /** Spends one token of `key`'s bucket: 0 when allowed, else the whole seconds until a token is back (at least 1). */
  take(key: string): number {
    const spec = this.spec;
    if (!spec) return 0;
    const now = this.clock();
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= SWEEP_ABOVE) this.sweep(now);
      b = { tokens: spec.burst, at: now };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(spec.burst, b.tokens + ((now - b.at) / 1000) * spec.perSecond);
      b.at = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / spec.perSecond));
  }

  /** Buckets that have refilled completely say nothing a new bucket would not. */
  private sweep(now: number): void {
    const spec = this.spec!;
    for (const [key, b] of this.buckets) {
      if (b.tokens + ((now - b.at) / 1000) * spec.perSecond >= spec.burst) this.buckets.delete(key);
    }
  }
}

export const DEFAULT_RATE_LIMITS = { perToken: "200/s burst 400", perAcmeAccount: "20/s burst 40" } as const;

/** The limiters of one service. */
export interface RateLimits {
  perToken: RateLimiter;
  perAcmeAccount: RateLimiter;
}

export function createRateLimits(specs: { perToken: RateSpec; perAcmeAccount: RateSpec }): RateLimits {
  return { perToken: new RateLimiter(specs.perToken), perAcmeAccount: new RateLimiter(specs.perAcmeAccount) };
}

/** The settings as src/config.ts reads them, straight from an environment. */
export function rateSpecsFromEnv(env: NodeJS.ProcessEnv): { perToken: RateSpec; perAcmeAccount: RateSpec } {
  const read = (name: string, fallback: string) => {
    const spec = parseRateSpec(env[name] ?? fallback);
    return spec === undefined ? parseRateSpec(fallback)! : spec;
  };
  return {
    perToken: read("HSM_CA_RATE_LIMIT_PER_TOKEN", DEFAULT_RATE_LIMITS.perToken),
    perAcmeAccount: read("HSM_CA_ACME_RATE_LIMIT_PER_ACCOUNT", DEFAULT_RATE_LIMITS.perAcmeAccount),
  };
}

const implicit = new WeakMap<object, RateLimits>();

/**
 * The limiters a service context carries (`rateLimits`, built from the
 * Config), or else one set per context from the process environment: the
 * same settings, since the service reads its Config from there.
 */
export function rateLimitsOf(ctx: { rateLimits?: RateLimits }): RateLimits {
  if (ctx.rateLimits) return ctx.rateLimits;
  let limits = implicit.get(ctx);
  if (!limits) implicit.set(ctx, (limits = createRateLimits(rateSpecsFromEnv(process.env))));
  return limits;
}

/** The counter of refused requests per limiter (the service's Prometheus metrics), by shape. */
interface RateLimitedCounter {
  inc(labels: { limiter: string }): void;
}

/** For src/api/require-role.ts and the dashboard: one request of an authenticated API token, refused as rate-limited beyond its rate. */
export function limitTokenRate(ctx: { rateLimits?: RateLimits; metrics?: { rateLimited: RateLimitedCounter } }, tokenId: string): void {
  const limiter = rateLimitsOf(ctx).perToken;
  const wait = limiter.take(tokenId);
  if (wait > 0) {
    ctx.metrics?.rateLimited.inc({ limiter: "api_token" });
    throw new Rejection("rate-limited", `this API token sent more requests than its limit of ${describeRate(limiter.spec)}; retry in ${wait} s`, {
      retryAfterSeconds: wait,
    });
  }
}

/** "200/s (burst 400)", for details. */
export function describeRate(spec: RateSpec): string {
  if (!spec) return "unlimited";
  const rate = spec.perSecond >= 1 ? `${+spec.perSecond.toFixed(3)}/s` : `${+(spec.perSecond * 60).toFixed(3)}/min`;
  return `${rate} (burst ${spec.burst})`;
}
