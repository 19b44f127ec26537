/**
 * Node's listener limits (src/api/server-limits.ts) as a hostile client
 * meets them: raw TCP and TLS sockets sending huge headers (431), headers
 * or a body too slowly (closed within the timeout). Servers started here
 * with serve() and the same options as the service's listeners, with the
 * timeouts shortened through their environment settings; the real
 * service's listeners refuse huge headers too.
 */
import fs from "node:fs";
import https from "node:https";
import net from "node:net";
import path from "node:path";
import tls from "node:tls";
import { serve, type ServerType } from "@hono/node-server";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SERVER_LIMITS, serverLimits } from "../src/api/server-limits.ts";
import { openssl, tempDir } from "./helpers/openssl.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

const HEADERS_TIMEOUT = 1_000;
const REQUEST_TIMEOUT = 2_000;
const LIMITS = serverLimits({ HSM_CA_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT), HSM_CA_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT) });

interface Listener {
  name: string;
  server: ServerType;
  connect(): net.Socket;
}

const listeners: Listener[] = [];
let dir: string;

function app(): Hono {
  const a = new Hono();
  a.get("/", (c) => c.text("ok"));
  // A body cut off by the server's timeout rejects here: expected, not worth a log line.
  a.post("/echo", async (c) => c.text(String(await c.req.arrayBuffer().then((b) => b.byteLength, () => -1))));
  return a;
}

function listening(server: ServerType): Promise<number> {
  return new Promise((resolve) => {
    const done = () => resolve((server.address() as net.AddressInfo).port);
    if (server.listening) done();
    else server.once("listening", done);
  });
}

beforeAll(async () => {
  dir = tempDir("server-limits-");
  const key = path.join(dir, "key.pem");
  const cert = path.join(dir, "cert.pem");
  openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-subj", "/CN=localhost", "-days", "1"]);
  const plain = serve({ fetch: app().fetch, hostname: "127.0.0.1", port: 0, serverOptions: LIMITS });
  const secure = serve({
    fetch: app().fetch,
    hostname: "127.0.0.1",
    port: 0,
    createServer: https.createServer,
    serverOptions: { ...LIMITS, key: fs.readFileSync(key), cert: fs.readFileSync(cert) },
  });
  const [plainPort, securePort] = await Promise.all([listening(plain), listening(secure)]);
  listeners.push(
    { name: "HTTP", server: plain, connect: () => net.connect(plainPort, "127.0.0.1") },
    { name: "HTTPS", server: secure, connect: () => tls.connect({ port: securePort, host: "127.0.0.1", rejectUnauthorized: false }) },
  );
});

afterAll(async () => {
  for (const l of listeners) await new Promise<void>((r) => l.server.close(() => r()));
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

interface Exchange {
  /** What the server sent, as text. */
  received: string;
  /** Milliseconds from connecting until the server closed the connection. */
  closedAfter: number;
}

/**
 * Writes `first`, then `drip` every `dripMs` until the server closes the
 * connection (or `giveUpMs`), and collects what it answered.
 */
function exchange(connect: () => net.Socket, first: string, opts: { drip?: string; dripMs?: number; giveUpMs?: number } = {}): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = connect();
    let received = "";
    let timer: NodeJS.Timeout | undefined;
    const giveUp = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the server kept the connection open for ${opts.giveUpMs ?? 10_000} ms; received ${JSON.stringify(received.slice(0, 200))}`));
    }, opts.giveUpMs ?? 10_000);
    socket.on("data", (d) => (received += d.toString("latin1")));
    socket.on("error", () => {}); // a reset is a close too
    socket.on("close", () => {
      clearInterval(timer);
      clearTimeout(giveUp);
      resolve({ received, closedAfter: Date.now() - started });
    });
    socket.write(first);
    if (opts.drip) {
      timer = setInterval(() => {
        if (!socket.destroyed && socket.writable) socket.write(opts.drip!);
      }, opts.dripMs ?? 200);
    }
  });
}

describe("the listeners' limits", () => {
  it("are 16 KiB of headers, 10 s for headers, 30 s for a request, 5 s idle keep-alive, checked every second", () => {
    expect(SERVER_LIMITS).toEqual({
      maxHeaderSize: 16 * 1024,
      headersTimeout: 10_000,
      requestTimeout: 30_000,
      keepAliveTimeout: 5_000,
      connectionsCheckingInterval: 1_000,
    });
    expect(LIMITS).toMatchObject({ headersTimeout: HEADERS_TIMEOUT, requestTimeout: REQUEST_TIMEOUT, connectionsCheckingInterval: 1_000 });
    // requestTimeout is never below headersTimeout (Node refuses that), and nonsense is ignored.
    expect(serverLimits({ HSM_CA_HEADERS_TIMEOUT_MS: "5000", HSM_CA_REQUEST_TIMEOUT_MS: "1000" }).requestTimeout).toBe(5_000);
    expect(serverLimits({ HSM_CA_HEADERS_TIMEOUT_MS: "soon" }).headersTimeout).toBe(10_000);
  });

  for (const which of ["HTTP", "HTTPS"]) {
    describe(which, () => {
      const l = () => listeners.find((x) => x.name === which)!;

      it("takes the options", () => {
        const s = l().server as unknown as Record<string, number>;
        expect(s.maxHeaderSize).toBe(16 * 1024);
        expect(s.headersTimeout).toBe(HEADERS_TIMEOUT);
        expect(s.requestTimeout).toBe(REQUEST_TIMEOUT);
        expect(s.keepAliveTimeout).toBe(5_000);
      });

      it("answers headers just under 16 KiB", async () => {
        const r = await exchange(l().connect, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(15 * 1024)}\r\nConnection: close\r\n\r\n`);
        expect(r.received).toMatch(/^HTTP\/1\.1 200 /);
      });

      it("refuses larger headers with 431 and closes the connection", async () => {
        const r = await exchange(l().connect, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(17 * 1024)}\r\n\r\n`);
        expect(r.received).toMatch(/^HTTP\/1\.1 431 /);
        // Many smaller headers count together (names and values; Node does not count ": " and CRLF).
        const many = Array.from({ length: 1_000 }, (_, i) => `X-Many-Header-${i}: value-value\r\n`).join("");
        expect((await exchange(l().connect, `GET / HTTP/1.1\r\nHost: x\r\n${many}\r\n`)).received).toMatch(/^HTTP\/1\.1 431 /);
      });

      it("closes a connection whose headers trickle in, within the headers timeout", async () => {
        const r = await exchange(l().connect, "GET / HTTP/1.1\r\nHost: x\r\n", { drip: "X-Slow: 1\r\n", dripMs: 200 });
        expect(r.closedAfter).toBeGreaterThanOrEqual(HEADERS_TIMEOUT - 100);
        expect(r.closedAfter).toBeLessThan(HEADERS_TIMEOUT + LIMITS.connectionsCheckingInterval + 1_000);
        expect(r.received === "" || /^HTTP\/1\.1 408 /.test(r.received)).toBe(true);
      });

      it("closes a connection that never finishes its headers", async () => {
        const r = await exchange(l().connect, "GET / HTTP/1.1\r\nHo");
        expect(r.closedAfter).toBeLessThan(HEADERS_TIMEOUT + LIMITS.connectionsCheckingInterval + 1_000);
      });

      it("closes a connection whose body does not arrive, within the request timeout", async () => {
        const r = await exchange(l().connect, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789", { drip: "x", dripMs: 300 });
        expect(r.closedAfter).toBeGreaterThanOrEqual(REQUEST_TIMEOUT - 100);
        expect(r.closedAfter).toBeLessThan(REQUEST_TIMEOUT + LIMITS.connectionsCheckingInterval + 1_000);
        expect(r.received === "" || /^HTTP\/1\.1 408 /.test(r.received)).toBe(true);
      });
    });
  }
});

describe("the service's listeners", () => {
  let t: TestService;
  beforeAll(async () => {
    t = await startTestService("pglite");
  });
  afterAll(async () => {
    await t?.stop();
  });

  it("refuse headers over 16 KiB with 431, on HTTPS and plain HTTP", async () => {
    const big = `GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: ${"a".repeat(17 * 1024)}\r\n\r\n`;
    const https = new URL(t.service.httpsUrl);
    const http = new URL(t.service.httpUrl);
    const overTls = await exchange(() => tls.connect({ host: https.hostname, port: Number(https.port), ca: t.rootPem, servername: "localhost" }), big);
    expect(overTls.received).toMatch(/^HTTP\/1\.1 431 /);
    const plain = await exchange(() => net.connect(Number(http.port), http.hostname), big);
    expect(plain.received).toMatch(/^HTTP\/1\.1 431 /);
    // And still answer.
    expect((await fetch(`${t.service.httpUrl}/healthz`)).status).toBe(200);
  });
});
