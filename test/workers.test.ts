import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, REPO, runCli } from "./helpers/cli.ts";
import { apiClient } from "./helpers/https.ts";
import { makeCsr, tempDir, verify } from "./helpers/openssl.ts";
import { freePort } from "./helpers/ports.ts";
import { createTestDatabase } from "./helpers/postgres.ts";

// `hsm-ca serve` with HSM_CA_WORKERS=2 as a user runs it: two service
// processes share the listeners (node:cluster), both issue, and a SIGTERM
// stops them all.

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let child: ChildProcess;
let output = "";
const dataDir = tempDir("hsmca-workers-");
let env: Record<string, string>;
let httpsPort: number;
let httpPort: number;

beforeAll(async () => {
  db = await createTestDatabase();
  httpsPort = await freePort();
  httpPort = await freePort();
  env = {
    HSM_CA_DATA_DIR: dataDir,
    DATABASE_URL: db.url,
    HSM_CA_PROFILES_DIR: `${REPO}/profiles`,
    HSM_CA_HTTPS_HOST: "127.0.0.1",
    HSM_CA_HTTPS_PORT: String(httpsPort),
    HSM_CA_HTTP_HOST: "127.0.0.1",
    HSM_CA_HTTP_PORT: String(httpPort),
  };
  child = spawn(process.execPath, [BIN, "serve"], { cwd: REPO, env: { PATH: process.env.PATH ?? "", HOME: "/tmp", ...env, HSM_CA_WORKERS: "2", HSM_CA_LOG_LEVEL: "info" } });
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  const deadline = Date.now() + 120_000;
  while (!output.includes('"msg":"hsm-ca workers are serving"')) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`hsm-ca serve did not start: ${output.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}, 150_000);

afterAll(async () => {
  if (child && child.exitCode === null) child.kill("SIGKILL");
  await db?.drop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** The serial of the certificate the HTTPS listener shows on a new connection. */
function serverCertificateSerial(): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port: httpsPort, rejectUnauthorized: false }, () => {
      resolve(s.getPeerCertificate().serialNumber);
      s.end();
    });
    s.on("error", reject);
  });
}

describe("HSM_CA_WORKERS", () => {
  it("serves from two processes that share the listeners", async () => {
    expect(output.match(/"msg":"hsm-ca is serving"/g)).toHaveLength(2);
    // Each worker has its own TLS certificate; new connections are spread over both.
    const serials = new Set<string>();
    for (let i = 0; i < 20 && serials.size < 2; i++) serials.add(await serverCertificateSerial());
    expect(serials.size).toBe(2);
  });

  it("issues certificates that openssl verifies, from every worker, all stored", async () => {
    const token = (await runCli(["token", "create", "--role", "issuer", "--profile", "tls-server"], env)).stdout.trim();
    const rootPem = await (await fetch(`http://127.0.0.1:${httpPort}/ca/root.pem`)).text();
    const api = apiClient(`https://127.0.0.1:${httpsPort}`, rootPem);
    const { csr } = makeCsr({ subject: "/CN=w.example.test", san: "DNS:w.example.test" });
    const results = await Promise.all(Array.from({ length: 24 }, () => api("POST", "/api/v1/certificates", { token, json: { csr, profile: "tls-server" } })));
    expect(results.map((r) => r.status)).toEqual(Array(24).fill(201));
    const serials = results.map((r) => (r.body as { serial: string }).serial);
    expect(new Set(serials).size).toBe(24);
    for (const r of results.slice(0, 3)) {
      const body = r.body as { serial: string; certificate: string; chain: string };
      expect(verify(rootPem, body.chain, body.certificate).output).toMatch(/: OK/);
    }
    // Each one is in the database, whichever worker issued it.
    for (const serial of serials) expect((await api("GET", `/api/v1/certificates/${serial}`, { token })).status).toBe(200);
  }, 60_000);

  it("stops every worker on SIGTERM, idle connections that never started TLS and all", async () => {
    // Spread over the workers by the primary; each worker closes its own when it stops.
    const idle = await Promise.all(
      Array.from(
        { length: 10 },
        () =>
          new Promise<net.Socket>((resolve, reject) => {
            const s = net.connect(httpsPort, "127.0.0.1", () => resolve(s));
            s.once("error", reject);
          }),
      ),
    );
    for (const s of idle) s.on("error", () => {});
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(output.match(/"msg":"stopped serving: in-flight requests answered, idle and half-open connections closed"/g)).toHaveLength(2);
    await expect(serverCertificateSerial()).rejects.toThrow();
  }, 30_000);

  it("is refused without PostgreSQL, in one line", async () => {
    const r = await runCli(["serve"], { HSM_CA_DATA_DIR: tempDir("hsmca-workers-lite-"), HSM_CA_WORKERS: "2" });
    expect(r.code).toBe(2); // a setting that cannot work: 2, as for every invalid setting
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/HSM_CA_WORKERS above 1 needs PostgreSQL/);
  });
});
