import fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROBLEM_TYPE_PREFIX } from "../src/api/problem.ts";
import { Rejection } from "../src/errors.ts";
import { HsmBusyError, HsmKeyError, HsmUnavailableError } from "../src/hsm/errors.ts";
import type { AvailabilityEvent, KeyUseEvent } from "../src/hsm/events.ts";
import { Hsm } from "../src/hsm/hsm.ts";
import { KEY_ALGORITHM_SPECS } from "../src/hsm/key-algorithms.ts";
import { closeAllSessionsForTest, removeEmbeddedTokenForTest } from "./helpers/hsm-faults.ts";
import { makeCsr } from "./helpers/openssl.ts";
import { startTestService, type TestService } from "./helpers/service.ts";
import { waitFor } from "./helpers/wait.ts";

/**
 * The HSM goes away and comes back while the service runs: its sessions
 * are closed (C_CloseAllSessions), the token is pulled out (SoftHSM2: its
 * directory moved away and back), the PIN stops working. Every time the
 * service answers 503 hsm-unavailable while it lasts and recovers by itself,
 * with no restart. And the pool's queue is bounded: beyond it, callers are
 * refused at once with hsm-busy.
 */
let t: TestService;
let token: string;
let csr: string;
const spec = KEY_ALGORITHM_SPECS["ecdsa-p256"];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  // A small pool and queue, so that the test can fill them (the defaults are 4 sessions and 256 waiters).
  t = await startTestService("postgres", { HSM_CA_HSM_SESSIONS: "2", HSM_CA_HSM_QUEUE_LIMIT: "2" });
  token = await t.token("admin");
  csr = makeCsr({ subject: "/CN=faults.example.test", san: "DNS:faults.example.test" }).csr;
});
afterAll(async () => {
  await t?.stop().catch(() => {});
});

const issue = () => t.api("POST", "/api/v1/certificates", { token, json: { csr, profile: "tls-server", validity: "1h" } });
const readyz = () => t.api("GET", "/readyz");

/** The service recovers by itself within 10 s: /readyz answers 200 again. */
const waitReady = () => waitFor("/readyz 200 (the service recovers within 10 s)", async () => (await readyz()).status === 200, { timeoutMs: 10_000 });

function expectHsmUnavailable(res: Awaited<ReturnType<typeof issue>>) {
  expect(res.status).toBe(503);
  expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
  expect(res.body.type).toBe(PROBLEM_TYPE_PREFIX + "hsm-unavailable");
  expect(Number(res.headers["retry-after"])).toBeGreaterThan(0);
}

function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, sleep(ms).then(() => Promise.reject(new Error(`${what} did not settle in ${ms} ms`)))]);
}

describe("the Hsm itself", () => {
  let hsm: Hsm;
  const events: KeyUseEvent[] = [];
  const sign = (label = "test/faults") =>
    hsm.withSigningKey(label, "ecdsa-p256", (k, crypto) => crypto.subtle.sign(spec.signParams, k, new Uint8Array(32)));

  beforeAll(async () => {
    // A second handle on the service's token (one SoftHSM2 configuration per process): 1 session, 4 waiters at most.
    hsm = Hsm.open({ ...t.config.hsm, sessions: 1, queueLimit: 4 }, t.config.dataDir);
    hsm.onKeyUse((e) => events.push(e));
    await hsm.generateKey("test/faults", "ecdsa-p256");
  });
  afterAll(() => hsm?.close());

  it("refuses callers beyond the queue at once with hsm-busy, and serves the rest", async () => {
    events.length = 0;
    const settledAt: Array<{ ok: boolean; at: number; err?: unknown }> = [];
    const calls = Array.from({ length: 50 }, () =>
      sign().then(
        () => settledAt.push({ ok: true, at: performance.now() }),
        (err) => settledAt.push({ ok: false, at: performance.now(), err }),
      ),
    );
    await bounded(Promise.all(calls), 20_000, "50 concurrent signatures");
    const ok = settledAt.filter((s) => s.ok);
    const refused = settledAt.filter((s) => !s.ok);
    // One on the session, four waiting: the other 45 are refused.
    expect(ok).toHaveLength(5);
    expect(refused).toHaveLength(45);
    for (const r of refused) {
      expect(r.err).toBeInstanceOf(HsmBusyError);
      expect(r.err).toBeInstanceOf(Rejection);
      expect((r.err as Rejection).kind).toBe("hsm-busy");
      expect((r.err as Rejection).retryAfterSeconds).toBeGreaterThan(0);
    }
    // Refused before the first signature was even done.
    expect(Math.max(...refused.map((r) => r.at))).toBeLessThanOrEqual(Math.min(...ok.map((r) => r.at)));
    expect(hsm.status.poolStats).toEqual({ size: 1, inUse: 0, waiting: 0 });
    // Refused calls never reached the key: only the five signatures are reported.
    expect(events.map((e) => [e.operation, e.ok])).toEqual(Array(5).fill(["sign", true]));
  });

  it("tells key-use listeners about every signature, key generation and destruction, without secrets", async () => {
    events.length = 0;
    const started = performance.now();
    const { id } = await hsm.generateKey("test/observed", "ecdsa-p256");
    await sign("test/observed");
    await expect(sign("test/no-such-key")).rejects.toBeInstanceOf(HsmKeyError);
    expect(hsm.destroyKey("test/observed")).toBe(true);
    expect(events.map(({ label, operation, ok }) => ({ label, operation, ok }))).toEqual([
      { label: "test/observed", operation: "generate", ok: true },
      { label: "test/observed", operation: "sign", ok: true },
      { label: "test/no-such-key", operation: "sign", ok: false },
      { label: "test/observed", operation: "destroy", ok: true },
    ]);
    // Each operation's duration in milliseconds: within the time the four of them took here.
    const elapsed = performance.now() - started;
    for (const e of events) {
      expect(Number.isFinite(e.ms)).toBe(true);
      expect(e.ms).toBeGreaterThanOrEqual(0);
      expect(e.ms).toBeLessThanOrEqual(elapsed);
    }
    expect(events.reduce((sum, e) => sum + e.ms, 0)).toBeLessThanOrEqual(elapsed);
    // The key's CKA_ID when it is known (an unknown label has none).
    expect(events.map((e) => e.id)).toEqual([id, id, undefined, id]);
    expect(events[2]!.error).toBe('no private key labelled "test/no-such-key" on the token');
    const pin = fs.readFileSync(pinFile(), "utf8").trim();
    expect(JSON.stringify(events)).not.toContain(pin);
  });

  it("never lends a closed session: calls running or queued when the sessions go fail with hsm-unavailable, none hangs", async () => {
    const availability: AvailabilityEvent[] = [];
    hsm.onAvailability((e) => availability.push(e));
    // Each call holds its session a little, so that some run and some wait when the sessions are closed.
    const slowSign = () =>
      hsm.withSigningKey("test/faults", "ecdsa-p256", async (k, crypto) => {
        await sleep(200);
        return crypto.subtle.sign(spec.signParams, k, new Uint8Array(32));
      });
    const results = Promise.allSettled(Array.from({ length: 4 }, slowSign));
    // One call holds the session, three wait for it: then the sessions go.
    await waitFor("one call on the session, three queued", () => hsm.status.poolStats.inUse === 1 && hsm.status.poolStats.waiting === 3, { intervalMs: 1 });
    closeAllSessionsForTest(hsm);
    const settled = await bounded(results, 10_000, "calls during the fault");
    const failures = settled.filter((r) => r.status === "rejected").map((r) => (r as PromiseRejectedResult).reason);
    expect(failures.length).toBeGreaterThan(0);
    for (const f of failures) {
      expect(f).toBeInstanceOf(HsmUnavailableError);
      expect((f as Rejection).kind).toBe("hsm-unavailable");
    }
    // Fails fast while away, then comes back by itself.
    expect(hsm.status.available).toBe(false);
    await expect(sign()).rejects.toThrow(/the HSM is unavailable: CKR_SESSION_HANDLE_INVALID/);
    await waitFor("the Hsm reconnects", () => hsm.status.available);
    await sign();
    expect(availability.map((a) => a.available)).toEqual([false, true]);
    expect(availability[0]).toEqual({ available: false, reason: "CKR_SESSION_HANDLE_INVALID" });
    expect(hsm.status.poolStats).toEqual({ size: 1, inUse: 0, waiting: 0 });
    // The service's sessions were closed too (C_CloseAllSessions is per process): it recovers as well.
    await waitReady();
  });
});

function pinFile(): string {
  const source = t.config.hsm.pinSource;
  if (!("file" in source)) throw new Error("the embedded token has a PIN file");
  return source.file;
}

describe("the service while the HSM goes away", () => {
  it("answers 503 hsm-unavailable when the sessions are closed, and recovers without a restart", async () => {
    await waitReady();
    const availability: AvailabilityEvent[] = [];
    const keyUses: KeyUseEvent[] = [];
    const stop = [t.service.hsm.onAvailability((e) => availability.push(e)), t.service.hsm.onKeyUse((e) => keyUses.push(e))];
    try {
      closeAllSessionsForTest(t.service.hsm);
      const ready = await readyz();
      expect(ready.status).toBe(503);
      expect(ready.body.type).toBe(PROBLEM_TYPE_PREFIX + "hsm-unavailable");
      expect(ready.body.detail).toMatch(/^hsm down: CKR_SESSION_HANDLE_INVALID/);
      expect(ready.body.checks.database).toBe("ok");
      expectHsmUnavailable(await issue());

      await waitReady();
      const again = await issue();
      expect(again.status).toBe(201);
      expect(availability.map((a) => a.available)).toEqual([false, true]);
      // The signature that issued it was reported with the intermediate's key label.
      expect(keyUses.some((e) => e.operation === "sign" && e.ok && e.label.startsWith("hsm-ca/intermediate/"))).toBe(true);
    } finally {
      for (const s of stop) s();
    }
  });

  it("answers 503 hsm-busy with Retry-After while every session is lent and the queue is full", async () => {
    await waitReady();
    const signer = t.service.ctx.issuer().signer;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // 2 sessions + 2 waiters: of 10 callers holding their session, at least 6 are refused.
    const holds = Array.from({ length: 10 }, () => signer.use(() => gate).then(() => "held", (err) => err));
    try {
      const res = await issue();
      expect(res.status).toBe(503);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
      expect(res.body.type).toBe(PROBLEM_TYPE_PREFIX + "hsm-busy");
      expect(res.headers["retry-after"]).toBe("1");
    } finally {
      release();
    }
    const outcomes = await bounded(Promise.all(holds), 10_000, "the held signatures");
    expect(outcomes.filter((o) => o instanceof HsmBusyError).length).toBeGreaterThanOrEqual(6);
    expect(outcomes.filter((o) => o !== "held" && !(o instanceof HsmBusyError))).toEqual([]);
    expect((await issue()).status).toBe(201);
  });

  it("answers 503 while the token is pulled out, and recovers when it is back (SoftHSM2: module re-initialised)", async () => {
    await waitReady();
    const token = removeEmbeddedTokenForTest(t.config.dataDir);
    try {
      const ready = await readyz();
      expect(ready.status).toBe(503);
      expect(ready.body.detail).toMatch(/^hsm down: CKR_/);
      expectHsmUnavailable(await issue());
      // Reconnecting fails while it is out, and says why.
      await waitFor("readyz says the token is missing", async () => /no token labelled "hsm-ca"/.test((await readyz()).body.detail ?? ""));
      expectHsmUnavailable(await issue());
    } finally {
      token.reinsert();
    }
    await waitReady();
    expect((await issue()).status).toBe(201);
  });

  it("stays unavailable with a clear reason (and no PIN) while the PIN is wrong, and recovers when it is right again", async () => {
    await waitReady();
    const file = pinFile();
    const pin = fs.readFileSync(file, "utf8");
    const wrong = "wrong-pin-7c1d9e";
    fs.writeFileSync(file, wrong + "\n");
    try {
      closeAllSessionsForTest(t.service.hsm);
      expect((await readyz()).status).toBe(503);
      await waitFor("readyz names the refused login", async () => /HSM login failed: CKR_PIN_INCORRECT/.test((await readyz()).body.detail ?? ""));
      // Then nothing changes by itself: two seconds later it has not logged in again.
      await sleep(2_000);
      const ready = await readyz();
      expect(ready.status).toBe(503);
      // Not retried with the same PIN (a real HSM would lock it): it says what to change.
      expect(ready.body.detail).toMatch(/not retried until the PIN in .*user\.pin changes/);
      const issued = await issue();
      expectHsmUnavailable(issued);
      for (const text of [ready.text, issued.text]) {
        expect(text).not.toContain(wrong);
        expect(text).not.toContain(pin.trim());
      }
    } finally {
      fs.writeFileSync(file, pin);
    }
    await waitReady();
    expect((await issue()).status).toBe(201);
  });
});
