/**
 * Authentication failures (no token, an unknown or revoked one) per client
 * address, in fixed windows that start at an address's first failure:
 *
 * - the audit log gets the first failure of each reason from an address at
 *   once, with its route and the claimed token id; every later one in the
 *   window is only counted, and one auth.failure entry with the counts is
 *   written when the window ends (or at shutdown). A client sending bogus
 *   tokens as fast as it can adds a few entries a window, not one a request.
 * - after `limit` failures in a window, requests from that address are
 *   answered 429 rate-limited (Retry-After: the rest of the window) before
 *   their token is looked up, except a token this process has already found
 *   valid (src/auth/api-tokens.ts): clients sharing the address (a NAT, a
 *   proxy) keep working, and guesses stop costing a database query.
 *
 * The address is the TCP peer's: behind a reverse proxy, the proxy's. IPv6
 * addresses count per /64, the block one host usually has. Per process,
 * like the other rate limits.
 */
import net from "node:net";

export interface AuthFailureSettings {
  /** Failures an address may have in a window before it gets 429; 0: never 429 (still aggregated). */
  limit: number;
  windowMs: number;
}

/** What one refused request was, for the audit log. Never the token. */
export interface AuthFailure {
  route: string;
  method: string;
  reason: string;
  /** The public id part of something shaped like a token. */
  claimedToken?: string;
}

/** The audit log's record(), by shape. */
interface Recorder {
  record(entry: { kind: string; actor: string; result: "error"; details: Record<string, unknown> }): void;
}

interface Window {
  start: number;
  /** Failures seen (the refused-over-limit requests are not failures: their token was not checked). */
  failures: number;
  /** Reasons already recorded on their own in this window. */
  recorded: Set<string>;
  /** What the summary will say. */
  counted: Map<string, number>;
  rateLimited: number;
  routes: Map<string, number>;
  claimedTokens: Set<string>;
}

/** Addresses tracked at once; beyond, new ones share one window (and never get 429). */
const MAX_ADDRESSES = 10_000;
const OVERFLOW = "other addresses";
/** Distinct routes and claimed token ids a summary lists. */
const MAX_LISTED = 10;

export class AuthFailures {
  private readonly windows = new Map<string, Window>();

  constructor(
    readonly settings: AuthFailureSettings,
    private readonly audit: Recorder | undefined,
    private readonly clock: () => number = () => Date.now(),
  ) {}

  /** How often closeEnded() should run (the auth-failure-windows job): a window's summary is written within this long after it ends. */
  get sweepEveryMs(): number {
    return Math.max(1_000, Math.min(this.settings.windowMs, 5_000));
  }

  /** 0: go on; else the whole seconds until the address's window ends (it is over its limit). */
  retryAfter(address: string): number {
    if (this.settings.limit <= 0) return 0;
    const w = this.current(clientKey(address));
    if (!w || w.failures < this.settings.limit) return 0;
    return Math.max(1, Math.ceil((w.start + this.settings.windowMs - this.clock()) / 1000));
  }

  /** A request answered 429 by retryAfter(): counted in the window's summary. */
  rateLimited(address: string, f: Pick<AuthFailure, "route">): void {
    const w = this.windowFor(clientKey(address));
    w.rateLimited++;
    this.countRoute(w, f.route);
  }

  /** An authentication failure. True when it went to the audit log on its own, false when it was counted for the summary. */
  failed(address: string, f: AuthFailure): boolean {
    const key = clientKey(address);
    const w = this.windowFor(key);
    w.failures++;
    if (!w.recorded.has(f.reason)) {
      w.recorded.add(f.reason);
      this.audit?.record({
        kind: "auth.failure",
        actor: "anonymous",
        result: "error",
        details: { route: f.route, method: f.method, reason: f.reason, claimed_token: f.claimedToken, client: address },
      });
      return true;
    }
    w.counted.set(f.reason, (w.counted.get(f.reason) ?? 0) + 1);
    this.countRoute(w, f.route);
    if (f.claimedToken && w.claimedTokens.size < MAX_LISTED) w.claimedTokens.add(f.claimedToken);
    return false;
  }

  /** Writes the summaries of windows that have ended. */
  closeEnded(): void {
    const now = this.clock();
    for (const [key, w] of this.windows) if (now >= w.start + this.settings.windowMs) this.close(key, w);
  }

  /** Writes every open window's summary: before the audit log stops. */
  stop(): void {
    for (const [key, w] of this.windows) this.close(key, w);
  }

  private close(key: string, w: Window): void {
    this.windows.delete(key);
    const checked = [...w.counted.values()].reduce((a, b) => a + b, 0);
    if (checked + w.rateLimited === 0) return;
    this.audit?.record({
      kind: "auth.failure",
      actor: "anonymous",
      result: "error",
      details: {
        client: key,
        aggregated: true,
        // The requests this entry stands for: failures not recorded on their own, plus those answered 429 unchecked.
        count: checked + w.rateLimited,
        rate_limited: w.rateLimited,
        reasons: Object.fromEntries(w.counted),
        routes: Object.fromEntries(w.routes),
        claimed_tokens: [...w.claimedTokens],
        window_start: new Date(w.start).toISOString(),
        window_end: new Date(Math.min(this.clock(), w.start + this.settings.windowMs)).toISOString(),
      },
    });
  }

  /** The address's open window, if any (an ended one is closed first). */
  private current(key: string): Window | undefined {
    const w = this.windows.get(key);
    if (w && this.clock() >= w.start + this.settings.windowMs) {
      this.close(key, w);
      return undefined;
    }
    return w;
  }

  private windowFor(key: string): Window {
    let w = this.current(key);
    if (w) return w;
    if (this.windows.size >= MAX_ADDRESSES) {
      this.closeEnded();
      if (this.windows.size >= MAX_ADDRESSES) return this.current(OVERFLOW) ?? this.open(OVERFLOW);
    }
    w = this.open(key);
    return w;
  }

  private open(key: string): Window {
    const w: Window = { start: this.clock(), failures: 0, recorded: new Set(), counted: new Map(), rateLimited: 0, routes: new Map(), claimedTokens: new Set() };
    this.windows.set(key, w);
    return w;
  }

  private countRoute(w: Window, route: string): void {
    if (w.routes.has(route) || w.routes.size < MAX_LISTED) w.routes.set(route, (w.routes.get(route) ?? 0) + 1);
  }
}

/** IPv4 as is (also when IPv4-mapped), IPv6 by its /64. */
export function clientKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!net.isIPv6(address)) return address;
  const [head, tail] = address.split("::") as [string, string | undefined];
  const left = head ? head.split(":") : [];
  const right = tail === undefined ? [] : tail ? tail.split(":") : [];
  const groups = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, "").toLowerCase()).join(":")}::/64`;
}
