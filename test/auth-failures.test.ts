/**
 * Authentication failures per client address (src/api/auth-failures.ts):
 * the windows with a clock of our own, then the real service with a small
 * limit: 200 bogus tokens from one address make two audit entries (the
 * first failure, then one with the count, written at shutdown and read
 * back with `hsm-ca audit export`), 429 with Retry-After beyond the limit,
 * while another address and a token already in use from the same address
 * keep working.
 */
import fs from "node:fs";
import https from "node:https";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthFailures, clientKey } from "../src/api/auth-failures.ts";
import { ConfigError, loadConfig } from "../src/config.ts";
import { runCliInProcess } from "./helpers/cli.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

type Entry = { kind: string; actor: string; result: string; details: Record<string, any> };

function tracker(limit: number, windowMs: number) {
  let now = 1_000_000;
  const entries: Entry[] = [];
  const f = new AuthFailures({ limit, windowMs }, { record: (e) => entries.push(e as Entry) }, () => now);
  return { f, entries, advance: (ms: number) => (now += ms) };
}

const bogus = { route: "/api/v1/cas", method: "GET", reason: "unknown token", claimedToken: "0123456789ab" };

describe("the windows", () => {
  it("record the first failure of each reason at once and the rest as one entry with the count when the window ends", () => {
    const { f, entries, advance } = tracker(0, 60_000);
    try {
      expect(f.failed("192.0.2.1", bogus)).toBe(true);
      expect(f.failed("192.0.2.1", { ...bogus, reason: "no bearer token", claimedToken: undefined })).toBe(true);
      for (let i = 0; i < 198; i++) expect(f.failed("192.0.2.1", { ...bogus, claimedToken: `00000000000${i % 3}` })).toBe(false);
      expect(entries.map((e) => e.details.reason)).toEqual(["unknown token", "no bearer token"]);
      expect(entries[0]!.details).toMatchObject({ route: "/api/v1/cas", method: "GET", claimed_token: "0123456789ab", client: "192.0.2.1" });
      advance(59_999);
      f.closeEnded();
      expect(entries).toHaveLength(2);
      advance(1);
      f.closeEnded();
      expect(entries).toHaveLength(3);
      expect(entries[2]).toMatchObject({ kind: "auth.failure", actor: "anonymous", result: "error" });
      expect(entries[2]!.details).toMatchObject({
        client: "192.0.2.1",
        aggregated: true,
        count: 198,
        rate_limited: 0,
        reasons: { "unknown token": 198 },
        routes: { "/api/v1/cas": 198 },
        claimed_tokens: ["000000000000", "000000000001", "000000000002"],
      });
      // A new window starts afresh.
      expect(f.failed("192.0.2.1", bogus)).toBe(true);
    } finally {
      f.stop();
    }
  });

  it("say how long to wait once an address is over its limit, other addresses untouched", () => {
    const { f, entries, advance } = tracker(3, 10_000);
    try {
      for (let i = 0; i < 3; i++) {
        expect(f.retryAfter("192.0.2.1")).toBe(0);
        f.failed("192.0.2.1", bogus);
      }
      expect(f.retryAfter("192.0.2.1")).toBe(10);
      f.rateLimited("192.0.2.1", bogus);
      expect(f.retryAfter("192.0.2.2")).toBe(0);
      advance(7_500);
      expect(f.retryAfter("192.0.2.1")).toBe(3);
      advance(2_500);
      // The window is over: allowed again, and its summary written.
      expect(f.retryAfter("192.0.2.1")).toBe(0);
      expect(entries.at(-1)!.details).toMatchObject({ count: 3, rate_limited: 1, reasons: { "unknown token": 2 } });
    } finally {
      f.stop();
    }
  });

  it("write the open windows' summaries at stop, and nothing for a window with a single failure", () => {
    const { f, entries } = tracker(20, 60_000);
    f.failed("192.0.2.1", bogus);
    f.failed("192.0.2.2", bogus);
    f.failed("192.0.2.2", bogus);
    f.stop();
    expect(entries.map((e) => [e.details.client, e.details.count])).toEqual([
      ["192.0.2.1", undefined],
      ["192.0.2.2", undefined],
      ["192.0.2.2", 1],
    ]);
  });

  it("count IPv6 clients by /64 and IPv4-mapped ones as IPv4", () => {
    expect(clientKey("2001:db8:1:2:aaaa::1")).toBe("2001:db8:1:2::/64");
    expect(clientKey("2001:db8:1:2:bbbb:cccc:dddd:eeee")).toBe("2001:db8:1:2::/64");
    expect(clientKey("2001:db8::1")).toBe("2001:db8:0:0::/64");
    expect(clientKey("::1")).toBe("0:0:0:0::/64");
    expect(clientKey("::ffff:10.0.0.1")).toBe("10.0.0.1");
    expect(clientKey("10.0.0.1")).toBe("10.0.0.1");
  });

  it("come from HSM_CA_AUTH_FAILURE_LIMIT and HSM_CA_AUTH_FAILURE_WINDOW", () => {
    expect(loadConfig({}).authFailures).toEqual({ limit: 20, windowMs: 60_000 });
    expect(loadConfig({ HSM_CA_AUTH_FAILURE_LIMIT: "0", HSM_CA_AUTH_FAILURE_WINDOW: "10m" }).authFailures).toEqual({ limit: 0, windowMs: 600_000 });
    expect(() => loadConfig({ HSM_CA_AUTH_FAILURE_LIMIT: "many" })).toThrow(ConfigError);
    expect(() => loadConfig({ HSM_CA_AUTH_FAILURE_WINDOW: "0s" })).toThrow(/HSM_CA_AUTH_FAILURE_WINDOW/);
  });
});

describe("on the service", () => {
  let t: TestService;
  let admin: string;
  let stopped = false;
  const LIMIT = 10;

  /** A GET over HTTPS from a chosen loopback address (Linux routes all of 127/8 to lo). */
  function get(path: string, token: string | undefined, from = "127.0.0.1"): Promise<{ status: number; retryAfter?: string; body: any }> {
    return new Promise((resolve, reject) => {
      const req = https.request(
        new URL(path, t.service.httpsUrl),
        { method: "GET", ca: t.rootPem, localAddress: from, agent: false, headers: token ? { authorization: `Bearer ${token}` } : {} },
        (res) => {
          let text = "";
          res.on("data", (d) => (text += d));
          res.on("end", () => resolve({ status: res.statusCode!, retryAfter: res.headers["retry-after"] as string | undefined, body: text ? JSON.parse(text) : undefined }));
        },
      );
      req.on("error", reject);
      req.end();
    });
  }

  beforeAll(async () => {
    t = await startTestService("pglite", { HSM_CA_AUTH_FAILURE_LIMIT: String(LIMIT), HSM_CA_AUTH_FAILURE_WINDOW: "10m" });
    admin = await t.token("admin");
  });
  afterAll(async () => {
    if (!stopped) await t?.stop();
    else fs.rmSync(t.config.dataDir, { recursive: true, force: true });
  });

  it("answers 401 up to the limit, then 429 with Retry-After; another address and a token in use keep working", async () => {
    expect((await get("/api/v1/cas", admin)).status).toBe(200);
    const statuses: number[] = [];
    let last: Awaited<ReturnType<typeof get>> | undefined;
    for (let i = 0; i < 200; i++) {
      last = await get("/api/v1/cas", `hsmca_0123456789ab_${"x".repeat(30)}${String(i).padStart(3, "0")}`);
      statuses.push(last.status);
    }
    expect(statuses.slice(0, LIMIT)).toEqual(Array(LIMIT).fill(401));
    expect(statuses.slice(LIMIT)).toEqual(Array(200 - LIMIT).fill(429));
    expect(last!.body).toMatchObject({ type: "urn:hsm-ca:problem:rate-limited", status: 429 });
    expect(Number(last!.retryAfter)).toBeGreaterThan(0);
    expect(Number(last!.retryAfter)).toBeLessThanOrEqual(600);
    // No token at all is refused the same way once over the limit.
    expect((await get("/api/v1/cas", undefined)).status).toBe(429);

    // The token in use from the same address, and a bogus one from another address.
    expect((await get("/api/v1/cas", admin)).status).toBe(200);
    expect((await get("/api/v1/cas", "hsmca_0123456789ab_" + "y".repeat(32), "127.0.0.2")).status).toBe(401);
  });

  it("closes ended windows from a job of the scheduler, on every replica", async () => {
    const job = (await t.service.jobs.status()).jobs.find((j) => j.name === "auth-failure-windows");
    expect(job).toMatchObject({ runsOn: "every-replica", schedule: "every 5 s" });
    expect(await t.service.jobs.runNow("auth-failure-windows")).toMatchObject({ job: "auth-failure-windows", result: "ok" });
  });

  it("leaves two audit entries for the 201 failures of 127.0.0.1: the first, and one with the count at shutdown", async () => {
    await t.service.close();
    stopped = true;
    const r = await runCliInProcess(["audit", "export"], t.env);
    expect(r.code, r.stderr).toBe(0);
    const entries: Entry[] = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    const failures = entries.filter((e) => e.kind === "auth.failure");
    const fromHere = failures.filter((e) => e.details.client === "127.0.0.1");
    expect(fromHere).toHaveLength(2);
    expect(fromHere[0]!.details).toMatchObject({ reason: "unknown token", claimed_token: "0123456789ab", route: "/api/v1/cas" });
    expect(fromHere[1]!.details).toMatchObject({
      aggregated: true,
      count: 200,
      rate_limited: 191,
      reasons: { "unknown token": LIMIT - 1 },
      claimed_tokens: ["0123456789ab"],
    });
    // 127.0.0.2's single failure, and never a token's secret part.
    expect(failures.filter((e) => e.details.client === "127.0.0.2")).toHaveLength(1);
    expect(r.stdout).not.toContain("x".repeat(30));
    expect(r.stdout).not.toContain("y".repeat(32));
  });
});
