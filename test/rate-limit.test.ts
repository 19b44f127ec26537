/**
 * Request rate limits per API token and per ACME account
 * (src/policy/rate-limit.ts): the token bucket with a clock of our own, the
 * settings, then the real service with small limits: 429 problems with
 * Retry-After on the REST API and ACME, other principals untouched, and
 * requests allowed again once the bucket has refilled.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRateSpec, RateLimiter } from "../src/policy/rate-limit.ts";
import { ConfigError, loadConfig } from "../src/config.ts";
import { countCertificates } from "../src/store/certificates.ts";
import { AcmeClient } from "./helpers/acme-client.ts";
import { newAccountKey } from "./helpers/acme-jws.ts";
import { makeCsr } from "./helpers/openssl.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

describe("rate settings", () => {
  it("parse RATE/UNIT with an optional burst, or off", () => {
    expect(parseRateSpec("50/s")).toEqual({ perSecond: 50, burst: 50 });
    expect(parseRateSpec("50/s burst 100")).toEqual({ perSecond: 50, burst: 100 });
    expect(parseRateSpec(" 600 / m ")).toEqual({ perSecond: 10, burst: 600 });
    expect(parseRateSpec("36/h burst 2")).toEqual({ perSecond: 0.01, burst: 2 });
    expect(parseRateSpec("0.5/s")).toEqual({ perSecond: 0.5, burst: 1 });
    expect(parseRateSpec("off")).toBeNull();
    for (const bad of ["", "50", "0/s", "-1/s", "5/x", "5/s burst 0", "5/s burst", "5/s,10", "five/s"]) expect(parseRateSpec(bad), bad).toBeUndefined();
  });

  it("come from HSM_CA_RATE_LIMIT_PER_TOKEN and HSM_CA_ACME_RATE_LIMIT_PER_ACCOUNT, with generous defaults", () => {
    expect(loadConfig({}).rateLimits).toEqual({ perToken: { perSecond: 200, burst: 400 }, perAcmeAccount: { perSecond: 20, burst: 40 } });
    const c = loadConfig({ HSM_CA_RATE_LIMIT_PER_TOKEN: "5/s burst 10", HSM_CA_ACME_RATE_LIMIT_PER_ACCOUNT: "off" });
    expect(c.rateLimits).toEqual({ perToken: { perSecond: 5, burst: 10 }, perAcmeAccount: null });
    expect(() => loadConfig({ HSM_CA_RATE_LIMIT_PER_TOKEN: "lots" })).toThrow(ConfigError);
    expect(() => loadConfig({ HSM_CA_ACME_RATE_LIMIT_PER_ACCOUNT: "10" })).toThrow(/HSM_CA_ACME_RATE_LIMIT_PER_ACCOUNT/);
  });
});

describe("the token bucket", () => {
  it("allows the burst, then one request per refilled token, and says how long to wait", () => {
    let now = 0;
    const limiter = new RateLimiter({ perSecond: 2, burst: 3 }, () => now);
    expect([limiter.take("a"), limiter.take("a"), limiter.take("a")]).toEqual([0, 0, 0]);
    expect(limiter.take("a")).toBe(1); // half a second to the next token: rounded up
    expect(limiter.take("b")).toBe(0); // another key has its own bucket
    now = 499;
    expect(limiter.take("a")).toBe(1);
    now = 500;
    expect(limiter.take("a")).toBe(0);
    expect(limiter.take("a")).toBe(1);
    now = 60_000; // refills to the burst, not beyond
    expect([limiter.take("a"), limiter.take("a"), limiter.take("a"), limiter.take("a")]).toEqual([0, 0, 0, 1]);
  });

  it("rounds Retry-After up to whole seconds at slow rates", () => {
    let now = 0;
    const limiter = new RateLimiter({ perSecond: 6 / 60, burst: 1 }, () => now);
    expect(limiter.take("k")).toBe(0);
    expect(limiter.take("k")).toBe(10);
    now = 2500;
    expect(limiter.take("k")).toBe(8);
  });

  it("is off when the setting is off", () => {
    const limiter = new RateLimiter(null);
    for (let i = 0; i < 1_000; i++) expect(limiter.take("k")).toBe(0);
  });

  it("forgets refilled buckets once it holds many, so idle principals cost no memory", () => {
    let now = 0;
    const limiter = new RateLimiter({ perSecond: 1, burst: 2 }, () => now);
    for (let i = 0; i < 10_000; i++) limiter.take(`k${i}`);
    const size = () => (limiter as unknown as { buckets: Map<string, unknown> }).buckets.size;
    expect(size()).toBe(10_000);
    now = 5_000;
    limiter.take("new");
    expect(size()).toBe(1);
  });
});

describe("on the service", () => {
  let t: TestService;
  let tokenA: string;
  let tokenB: string;
  let acme: AcmeClient;
  // A token back every 2 s: slow enough that a loaded machine does not refill a bucket between two requests.
  const env = { HSM_CA_RATE_LIMIT_PER_TOKEN: "30/m burst 4", HSM_CA_ACME_RATE_LIMIT_PER_ACCOUNT: "30/m burst 3" };
  /** Sends until refused (at most `max`): the statuses seen. */
  async function untilRefused(send: () => Promise<number>, max = 12): Promise<number[]> {
    const seen: number[] = [];
    while (seen.length < max && seen.at(-1) !== 429) seen.push(await send());
    return seen;
  }

  beforeAll(async () => {
    // The service reads the limits from its Config, or from the environment.
    Object.assign(process.env, env);
    t = await startTestService("pglite", env);
    [tokenA, tokenB] = await Promise.all([t.token("admin"), t.token("issuer", "tls-server")]);
    acme = new AcmeClient(t.service.httpsUrl, t.rootPem);
    await acme.init();
  });
  afterAll(async () => {
    acme?.close();
    await t?.stop();
  });

  it("answers a token over its rate with 429 rate-limited and Retry-After, before doing anything", async () => {
    const statuses = await untilRefused(async () => (await t.api("GET", "/api/v1/cas", { token: tokenA })).status);
    expect(statuses.slice(0, 4)).toEqual([200, 200, 200, 200]);
    expect(statuses.at(-1)).toBe(429);

    const before = await countCertificates(t.service.ctx.store.db);
    const { csr } = makeCsr({ subject: "/CN=limited.example.test", san: "DNS:limited.example.test" });
    const res = await t.api("POST", "/api/v1/certificates", { token: tokenA, json: { csr, profile: "tls-server" } });
    expect(res.status, res.text).toBe(429);
    expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({ type: "urn:hsm-ca:problem:rate-limited", status: 429, instance: "/api/v1/certificates" });
    expect(res.body.detail).toMatch(/30\/min \(burst 4\)/);
    // 30/min refills one request every 2 s; time already spent since the refusal may round it to 1.
    expect(["1", "2"]).toContain(res.headers["retry-after"]);
    expect(await countCertificates(t.service.ctx.store.db)).toBe(before);

    // Another token, and requests without a valid token, are not held back by A's bucket.
    expect((await t.api("GET", "/api/v1/cas", { token: tokenB })).status).toBe(200);
    expect((await t.api("GET", "/api/v1/cas", { token: "hsmca_nope_x" })).status).toBe(401);

    // Retry-After was right: two seconds later A may go on.
    await new Promise((r) => setTimeout(r, 2_000));
    const again = await t.api("POST", "/api/v1/certificates", { token: tokenA, json: { csr, profile: "tls-server" } });
    expect(again.status, again.text).toBe(201);
  });

  it("answers an ACME account over its rate with 429 rateLimited, Retry-After and a nonce", async () => {
    const { account } = await acme.newAccount(newAccountKey("ES256"));
    const { account: other } = await acme.newAccount(newAccountKey("ES256"));
    const statuses = await untilRefused(async () => (await acme.postAs(account, account.url, "")).status);
    expect(statuses.slice(0, 3)).toEqual([200, 200, 200]);
    expect(statuses.at(-1)).toBe(429);
    const res = await acme.postAs(account, account.url, "");
    expect(res.status, res.text).toBe(429);
    expect(res.body).toMatchObject({ type: "urn:ietf:params:acme:error:rateLimited", status: 429 });
    expect(res.body.detail).toMatch(/30\/min \(burst 3\)/);
    expect(res.retryAfter).toBe(2);
    expect(res.nonce).toMatch(/^[A-Za-z0-9_-]{16,}$/);
    // newOrder too: the limit is per account, whatever the resource.
    const order = await acme.postAs(account, acme.directory.newOrder, { identifiers: [{ type: "dns", value: "a.example.test" }] });
    expect(order.status).toBe(429);
    expect((await acme.postAs(other, other.url, "")).status).toBe(200);
    await new Promise((r) => setTimeout(r, 2_000));
    expect((await acme.postAs(account, account.url, "")).status).toBe(200);
  });
});
