import { execFileSync } from "node:child_process";
import net from "node:net";
import { sql } from "drizzle-orm";
import { withTimeout } from "../src/with-timeout.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROBLEM_TYPE_PREFIX } from "../src/api/problem.ts";
import { makeCsr } from "./helpers/openssl.ts";
import { freePort } from "./helpers/ports.ts";
import { createTestDatabase } from "./helpers/postgres.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

/**
 * PostgreSQL goes away and comes back while the service runs. The shared
 * server is never stopped: the service reaches it through a TCP proxy of
 * this test's own, which is stopped (every connection cut, nothing
 * listening) and started again on the same port, or turned into a black
 * hole: every socket stays open and nothing goes through in either
 * direction, not even a close, as when a firewall or a dead route drops
 * packets; resume() lets everything through again, closes included.
 */
class TcpProxy {
  private server?: net.Server;
  private readonly links = new Set<{ client: net.Socket; upstream?: net.Socket }>();
  private holding = false;

  constructor(
    readonly port: number,
    private readonly target: { host: string; port: number },
  ) {}

  start(): Promise<void> {
    const server = net.createServer((client) => {
      const link: { client: net.Socket; upstream?: net.Socket } = { client };
      this.links.add(link);
      client.on("error", () => this.cut(link));
      client.on("close", () => this.cut(link));
      if (this.holding) client.pause();
      else this.connect(link);
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
  }

  /** Cuts every connection and stops listening: to the service, the server is gone. */
  stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.holding = false;
    for (const link of [...this.links]) this.cut(link);
    return new Promise((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }

  /** Nothing goes through any more, and nobody is told: connections stay open, new ones are accepted and held. */
  blackHole(): void {
    this.holding = true;
    for (const { client, upstream } of this.links) {
      client.unpipe();
      upstream?.unpipe();
      client.pause();
      upstream?.pause();
    }
  }

  /** The path is back: held bytes flow, new connections reach the server, closes that happened meanwhile arrive. */
  resume(): void {
    this.holding = false;
    for (const link of [...this.links]) {
      if (link.client.destroyed || link.upstream?.destroyed) this.cut(link);
      else if (!link.upstream) this.connect(link);
      else {
        link.client.pipe(link.upstream);
        link.upstream.pipe(link.client);
      }
    }
  }

  private connect(link: { client: net.Socket; upstream?: net.Socket }): void {
    const upstream = net.connect(this.target.port, this.target.host);
    link.upstream = upstream;
    upstream.on("error", () => this.cut(link));
    upstream.on("close", () => this.cut(link));
    link.client.pipe(upstream).pipe(link.client);
  }

  private cut(link: { client: net.Socket; upstream?: net.Socket }): void {
    if (this.holding) return; // a black hole passes on no FIN or RST either
    this.links.delete(link);
    link.client.destroy();
    link.upstream?.destroy();
  }
}

let t: TestService;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let proxy: TcpProxy;
let token: string;
let csr: string;

beforeAll(async () => {
  db = await createTestDatabase();
  const direct = new URL(db.url);
  proxy = new TcpProxy(await freePort(), { host: direct.hostname, port: Number(direct.port || 5432) });
  await proxy.start();
  const proxied = new URL(db.url);
  proxied.hostname = "127.0.0.1";
  proxied.port = String(proxy.port);
  // "pglite" only means startTestService creates no database: DATABASE_URL points at ours, through the proxy.
  t = await startTestService("pglite", { DATABASE_URL: proxied.toString() });
  token = await t.token("admin");
  csr = makeCsr({ subject: "/CN=db-faults.example.test", san: "DNS:db-faults.example.test" }).csr;
});
afterAll(async () => {
  proxy?.resume(); // a failed black-hole test leaves it holding
  await proxy?.start().catch(() => {}); // let the service close its connections cleanly
  await t?.stop().catch(() => {});
  await proxy?.stop();
  await db?.drop();
});

const issue = () => t.api("POST", "/api/v1/certificates", { token, json: { csr, profile: "tls-server", validity: "1h" } });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("the database goes away and comes back", () => {
  it("issues through the proxy", async () => {
    expect(t.service.ctx.store.kind).toBe("postgres");
    expect((await issue()).status).toBe(201);
    expect((await t.api("GET", "/readyz")).status).toBe(200);
  });

  it("answers 503 database-unavailable with Retry-After while it is gone, and /readyz names the database", async () => {
    await proxy.stop();
    for (let i = 0; i < 3; i++) {
      const res = await issue();
      expect(res.status).toBe(503);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
      expect(res.body.type).toBe(PROBLEM_TYPE_PREFIX + "database-unavailable");
      expect(Number(res.headers["retry-after"])).toBeGreaterThan(0);
    }
    const ready = await t.api("GET", "/readyz");
    expect(ready.status).toBe(503);
    expect(ready.body.type).toBe(PROBLEM_TYPE_PREFIX + "database-unavailable");
    expect(ready.body.checks).toMatchObject({ hsm: "ok", database: expect.stringMatching(/^down: /) });
    expect(ready.body.detail).toMatch(/^database down: /);
  });

  it("issues again within seconds once it is back, with no restart", async () => {
    await proxy.start();
    const started = Date.now();
    let status = 0;
    while (Date.now() - started < 15_000) {
      status = (await issue()).status;
      if (status === 201) break;
      await sleep(200);
    }
    expect(status).toBe(201);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect((await t.api("GET", "/readyz")).status).toBe(200);
  });
});

describe("a slow statement on a database that answers", () => {
  it("is not taken for a black hole: it runs past the answer timeout and returns its rows", async () => {
    const db = t.service.ctx.store.db;
    const answerMs = t.config.databaseBounds.answerTimeoutMs;
    const started = Date.now();
    const rows = await db.execute(sql.raw(`select pg_sleep(${(answerMs * 2.5) / 1000}) is null as slept`));
    expect(Date.now() - started).toBeGreaterThanOrEqual(answerMs * 2.5);
    expect(Array.from(rows as unknown as Iterable<{ slept: boolean }>)[0]).toMatchObject({ slept: false });
    expect((await issue()).status).toBe(201);
  }, 30_000);
});

describe("the network path to the database becomes a black hole and comes back", () => {
  it("answers 503 within 5 s on /readyz, issuance, ACME and /crl while nothing gets through, then recovers by itself with no reset and no restart", async () => {
    const first = await issue();
    expect(first.status).toBe(201);
    // The CRL a relying party of this certificate fetches.
    const crlUrl = /URI:(\S+)/.exec(execFileSync("openssl", ["x509", "-noout", "-ext", "crlDistributionPoints"], { input: first.body.certificate, encoding: "utf8" }))![1]!;
    expect((await fetch(crlUrl)).status).toBe(200);
    const issued: string[] = [first.body.serial];

    proxy.blackHole();

    const ready = await withTimeout(t.api("GET", "/readyz"), 5_000);
    expect(ready.status).toBe(503);
    expect(ready.body.type).toBe(PROBLEM_TYPE_PREFIX + "database-unavailable");

    // Twice: the second finds the pool's connections dropped and new ones held by the black hole.
    for (let i = 0; i < 2; i++) {
      const res = await withTimeout(issue(), 5_000);
      expect(res.status).toBe(503);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
      expect(res.body.type).toBe(PROBLEM_TYPE_PREFIX + "database-unavailable");
      expect(Number(res.headers["retry-after"])).toBeGreaterThan(0);
    }

    // ACME: every response carries a fresh nonce, which is stored in the database.
    const nonce = await withTimeout(t.api("GET", "/acme/new-nonce"), 5_000);
    expect(nonce.status).toBe(503);
    expect(nonce.headers["content-type"]).toMatch(/^application\/problem\+json/);

    const crl = await withTimeout(fetch(crlUrl), 5_000);
    expect([200, 503]).toContain(crl.status);
    if (crl.status === 503) expect((await crl.json()).type).toBe(PROBLEM_TYPE_PREFIX + "database-unavailable");

    // The path returns; the sockets the service still holds were never reset.
    proxy.resume();
    const back = Date.now();
    let res = await issue();
    while (res.status !== 201 && Date.now() - back < 15_000) {
      await sleep(200);
      res = await issue();
    }
    expect(res.status).toBe(201);
    issued.push(res.body.serial);
    expect((await withTimeout(t.api("GET", "/readyz"), 5_000)).status).toBe(200);
    expect((await withTimeout(fetch(crlUrl), 5_000)).status).toBe(200);
    expect((await withTimeout(t.api("GET", "/acme/new-nonce"), 5_000)).status).toBe(204);

    // The audit writer, whose flushes failed meanwhile, catches up: it was not left waiting on a dead connection.
    const audit = t.service.ctx.audit!;
    audit.record({ kind: "test.after-black-hole" });
    const flushed = Date.now();
    while (audit.pendingCount > 0 && Date.now() - flushed < 15_000) await sleep(100);
    expect(audit.pendingCount).toBe(0);

    // Every certificate the service answered with is in the database.
    for (const serial of issued) {
      expect((await t.api("GET", `/api/v1/certificates/${serial}`, { token })).status).toBe(200);
    }
  }, 60_000);
});
