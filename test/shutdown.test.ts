/**
 * Shutdown and connection limits as an operator and a hostile client meet
 * them, on the real `hsm-ca serve` (PGlite) in a child process: SIGTERM
 * with idle connections open, SIGTERM while a request is in flight, a
 * client that connects and never starts TLS, and more connections than
 * the configured cap.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import tls from "node:tls";
import { withTimeout } from "../src/with-timeout.ts";
import { waitFor } from "./helpers/wait.ts";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { connectionCap, connectionCapFor, descriptorLimit } from "../src/api/connection-cap.ts";
import { BIN, REPO, runCli } from "./helpers/cli.ts";
import { makeCsr, tempDir } from "./helpers/openssl.ts";

const dataDir = tempDir("hsmca-shutdown-");
const running = new Set<ChildProcess>();
const baseEnv = {
  HSM_CA_DATA_DIR: dataDir,
  HSM_CA_PROFILES_DIR: path.join(REPO, "profiles"),
  HSM_CA_HTTPS_HOST: "127.0.0.1",
  HSM_CA_HTTPS_PORT: "0",
  HSM_CA_HTTP_HOST: "127.0.0.1",
  HSM_CA_HTTP_PORT: "0",
};

afterAll(() => {
  fs.rmSync(dataDir, { recursive: true, force: true });
});

interface Serving {
  child: ChildProcess;
  httpsPort: number;
  httpPort: number;
  /** Every JSON log line so far. */
  lines: Array<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `hsm-ca serve` and resolves once it logs that it serves. */
function serve(extraEnv: Record<string, string> = {}): Promise<Serving> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, "serve"], {
      cwd: REPO,
      env: { PATH: process.env.PATH ?? "", HOME: "/tmp", ...baseEnv, ...extraEnv, HSM_CA_LOG_LEVEL: "info" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    running.add(child);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
      child.once("exit", (code, signal) => {
        running.delete(child);
        r({ code, signal });
      }),
    );
    const lines: Array<Record<string, unknown>> = [];
    let buffer = "";
    const timer = setTimeout(() => reject(new Error("hsm-ca serve did not come up in 60 s")), 60_000);
    child.stderr!.on("data", (d) => {
      buffer += d;
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        let entry: Record<string, unknown>;
        try {
          entry = JSON.parse(line);
        } catch {
          entry = { msg: line }; // not a log line: an error printed by the CLI
        }
        lines.push(entry);
        if (entry.msg === "hsm-ca is serving") {
          clearTimeout(timer);
          resolve({ child, httpsPort: Number(new URL(String(entry.https)).port), httpPort: Number(new URL(String(entry.http)).port), lines, exited });
        }
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`hsm-ca serve exited (${code ?? signal}) before serving: ${JSON.stringify(lines.slice(-3))}`));
    });
  });
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1", () => resolve(s));
    s.once("error", reject);
  });
}

/** Resolves when the socket is closed (by the server: these clients never close first). */
function closed(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    socket.on("error", () => {});
    if (socket.destroyed) return resolve();
    socket.once("close", () => resolve());
  });
}

/** A TLS connection to the HTTPS listener that completed its handshake (and sent nothing). */
function tlsConnect(port: number, ca: string): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, ca, servername: "localhost" }, () => resolve(s));
    s.once("error", reject);
    s.once("close", () => reject(new Error("closed before the TLS handshake completed")));
  });
}

/** Collects what the server sends until it closes the connection. */
function readAll(socket: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    socket.on("data", (d) => (text += d.toString("latin1")));
    socket.on("error", () => {});
    socket.once("close", () => resolve(text));
  });
}

async function refused(port: number): Promise<boolean> {
  try {
    (await connect(port)).destroy();
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ECONNREFUSED";
  }
}

const stoppedLines = (s: Serving) => s.lines.filter((l) => String(l.msg).startsWith("stopped serving"));

describe("SIGTERM", () => {
  // A test that failed half-way leaves no service holding the data directory for the next.
  afterEach(() => {
    for (const p of running) p.kill("SIGKILL");
  });

  it("with 20 idle TCP connections on HTTPS (and idle ones on HTTP) exits within the drain, in one log line", async () => {
    const s = await serve();
    const rootPem = await (await fetch(`http://127.0.0.1:${s.httpPort}/ca/root.pem`)).text();
    // Connected, never started TLS: what held the old shutdown for 120 s.
    const idle = await Promise.all(Array.from({ length: 20 }, () => connect(s.httpsPort)));
    // Finished their handshake and sent nothing; and idle plain-HTTP connections.
    idle.push(...(await Promise.all([1, 2, 3].map(() => tlsConnect(s.httpsPort, rootPem)))));
    idle.push(...(await Promise.all([1, 2, 3].map(() => connect(s.httpPort)))));
    const allClosed = Promise.all(idle.map(closed));

    s.child.kill("SIGTERM");
    // The default drain is 10 s; with nothing in flight it does not wait at all.
    expect(await withTimeout(s.exited, 20_000, "exit after SIGTERM")).toEqual({ code: 0, signal: null });
    await allClosed;
    const stopped = stoppedLines(s);
    expect(stopped).toHaveLength(1);
    expect(stopped[0]).toMatchObject({ level: 30, inFlight: 0, cut: 0 });
    expect(stopped[0]!.connections).toBeGreaterThanOrEqual(26);
  }, 90_000);

  it("answers /readyz 503 and refuses new connections at once, lets an in-flight issuance finish, and the data directory opens again", async () => {
    const s = await serve({ HSM_CA_SHUTDOWN_DRAIN_MS: "30000" });
    const env = { ...baseEnv };
    const rootPem = await (await fetch(`http://127.0.0.1:${s.httpPort}/ca/root.pem`)).text();
    const token = (await runCli(["token", "create", "--role", "issuer", "--profile", "tls-server"], env)).stdout.trim();
    expect(token).not.toBe("");
    const { csr } = makeCsr({ subject: "/CN=drain.example.test", san: "DNS:drain.example.test" });
    const body = JSON.stringify({ csr, profile: "tls-server" });

    // An issuance in flight: its headers are in (the server said "100 Continue"), half its body is not.
    const issuance = await tlsConnect(s.httpsPort, rootPem);
    const issuanceAnswer = readAll(issuance);
    const continued = new Promise<void>((resolve) => issuance.once("data", () => resolve()));
    issuance.write(
      `POST /api/v1/certificates HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nExpect: 100-continue\r\n\r\n`,
    );
    await withTimeout(continued, 10_000, "100 Continue");
    issuance.write(body.slice(0, 100));
    // A health check on HTTPS whose request is not complete yet. (Plain HTTP, with nothing in flight, closes its connections at once.)
    const probe = await tlsConnect(s.httpsPort, rootPem);
    const probeAnswer = readAll(probe);
    probe.write("GET /readyz HTTP/1.1\r\nHost: localhost\r\n");

    s.child.kill("SIGTERM");
    await waitFor("new connections refused", async () => (await refused(s.httpsPort)) && (await refused(s.httpPort)), { timeoutMs: 10_000 });
    probe.write("\r\n");
    const readyz = await withTimeout(probeAnswer, 10_000, "the /readyz answer");
    expect(readyz).toMatch(/^HTTP\/1\.1 503 /);
    expect(readyz).toMatch(/\r\nconnection: close\r\n/i);
    expect(readyz).toContain("urn:hsm-ca:problem:shutting-down");

    issuance.write(body.slice(100));
    const answer = await withTimeout(issuanceAnswer, 20_000, "the issuance answer");
    expect(answer).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 201 /);
    expect(answer).toContain("-----BEGIN CERTIFICATE-----");

    expect(await withTimeout(s.exited, 20_000, "exit after the drain")).toEqual({ code: 0, signal: null });
    const stopped = stoppedLines(s);
    expect(stopped).toHaveLength(1);
    expect(stopped[0]).toMatchObject({ cut: 0 });
    expect(stopped[0]!.inFlight).toBeGreaterThanOrEqual(1);

    // The embedded database is free: a restart serves (it failed as "in use" while the old process hung on).
    const again = await serve();
    expect((await fetch(`http://127.0.0.1:${again.httpPort}/readyz`)).status).toBe(200);
    again.child.kill("SIGTERM");
    expect(await withTimeout(again.exited, 20_000, "exit")).toEqual({ code: 0, signal: null });
  }, 150_000);
});

describe("the listeners' connection limits", () => {
  const HANDSHAKE_MS = 1_000;
  const CAP = 4;
  let s: Serving;
  let rootPem: string;

  beforeAll(async () => {
    s = await serve({ HSM_CA_TLS_HANDSHAKE_TIMEOUT_MS: String(HANDSHAKE_MS), HSM_CA_MAX_CONNECTIONS: String(CAP) });
    rootPem = await (await fetch(`http://127.0.0.1:${s.httpPort}/ca/root.pem`)).text();
  }, 90_000);
  afterAll(async () => {
    if (s.child.exitCode !== null) return;
    s.child.kill("SIGTERM");
    expect(await withTimeout(s.exited, 20_000, "exit")).toEqual({ code: 0, signal: null });
  }, 30_000);

  it("close a connection that never starts TLS after the handshake timeout", async () => {
    const silent = await connect(s.httpsPort);
    // Node's default was 120 s.
    await withTimeout(closed(silent), 10_000, "the silent connection closed");
  });

  it("refuse HTTPS connections beyond the cap while /readyz answers on plain HTTP, and accept again below it", async () => {
    const holders = await Promise.all(Array.from({ length: CAP }, () => tlsConnect(s.httpsPort, rootPem)));
    await expect(tlsConnect(s.httpsPort, rootPem)).rejects.toThrow();
    const ready = await fetch(`http://127.0.0.1:${s.httpPort}/readyz`);
    expect(ready.status).toBe(200);
    expect(s.lines.some((l) => l.msg === "a listener is at its connection cap: refusing new connections" && l.listener === "https" && l.maxConnections === CAP)).toBe(true);

    for (const h of holders) h.destroy();
    await waitFor("HTTPS accepting again", () => tlsConnect(s.httpsPort, rootPem).then((t) => (t.destroy(), true), () => false), { timeoutMs: 10_000 });
  });
});

describe("the default connection cap", () => {
  it("keeps both listeners together below this process's descriptor limit, with room for the rest", () => {
    const limit = descriptorLimit();
    expect(limit).toBeGreaterThan(0);
    const cap = connectionCap(undefined, limit)!;
    expect(2 * cap).toBeLessThanOrEqual(limit! - 256);
    expect(connectionCapFor(1024)).toBe(384);
    expect(connectionCapFor(20_000)).toBe(9_000);
    // The setting wins.
    expect(connectionCap(50, limit)).toBe(50);
  });

  it("reads the soft limit from /proc/self/limits", () => {
    const dir = tempDir("limits-");
    const file = path.join(dir, "limits");
    fs.writeFileSync(file, "Limit                     Soft Limit           Hard Limit           Units\nMax open files            4096                 524288               files\n");
    expect(descriptorLimit(file)).toBe(4096);
    expect(descriptorLimit(path.join(dir, "missing"))).toBeUndefined();
    fs.rmSync(dir, { recursive: true });
  });
});
