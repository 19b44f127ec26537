import net from "node:net";
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
 * listening) and started again on the same port.
 */
class TcpProxy {
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();

  constructor(
    readonly port: number,
    private readonly target: { host: string; port: number },
  ) {}

  start(): Promise<void> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
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
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    return new Promise((resolve) => (server ? server.close(() => resolve()) : resolve()));
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
