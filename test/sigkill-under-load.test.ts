import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { BIN, REPO, runCli } from "./helpers/cli.ts";
import { apiClient } from "./helpers/https.ts";
import { makeCsr, tempDir } from "./helpers/openssl.ts";
import { createTestDatabase } from "./helpers/postgres.ts";

/**
 * SIGKILL under load: the real `hsm-ca serve` on PostgreSQL is killed while
 * 16 clients issue certificates as fast as they can, then started again on
 * the same data directory and database. Every certificate a client received
 * must be in the database, exactly as received ("stored before returned"),
 * and no serial may appear twice.
 */
const LOOPS = 16;
const dataDir = tempDir("hsmca-kill-");
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let env: Record<string, string>;
const running = new Set<ChildProcess>();

beforeAll(async () => {
  db = await createTestDatabase();
  env = { HSM_CA_DATA_DIR: dataDir, DATABASE_URL: db.url, HSM_CA_HTTPS_PORT: "0", HSM_CA_HTTP_PORT: "0", HSM_CA_LOG_LEVEL: "warn" };
});
afterAll(async () => {
  for (const p of running) p.kill("SIGKILL");
  await db?.drop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

interface Serving {
  child: ChildProcess;
  httpsUrl: string;
  httpUrl: string;
}

/** Starts `hsm-ca serve` and resolves once it logs that it serves (the one info line it is asked for). */
function serve(): Promise<Serving> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, "serve"], {
      cwd: REPO,
      // info for the "serving" line; everything else it logs is read and dropped.
      env: { PATH: process.env.PATH ?? "", ...env, HSM_CA_LOG_LEVEL: "info" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    running.add(child);
    child.on("exit", () => running.delete(child));
    let buffer = "";
    const timer = setTimeout(() => reject(new Error("hsm-ca serve did not come up in 30 s")), 30_000);
    child.stderr!.on("data", (d) => {
      buffer += d;
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        let entry: Record<string, any>;
        try {
          entry = JSON.parse(line);
        } catch {
          continue;
        }
        if (entry.msg === "hsm-ca is serving") {
          clearTimeout(timer);
          resolve({ child, httpsUrl: entry.https, httpUrl: entry.http });
        }
      }
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`hsm-ca serve exited (${code ?? signal}) before serving`));
    });
  });
}

describe("SIGKILL under load", () => {
  it("loses no certificate a client received and repeats no serial", async () => {
    const first = await serve();
    const rootPem = await (await fetch(`${first.httpUrl}/ca/root.pem`)).text();
    const created = await runCli(["token", "create", "--role", "issuer", "--profile", "tls-server"], env);
    expect(created.code, created.stderr).toBe(0);
    const token = created.stdout.trim();
    const csrs = Array.from({ length: 4 }, (_, i) => makeCsr({ subject: `/CN=k${i}.example.test`, san: `DNS:k${i}.example.test` }).csr);

    const api = apiClient(first.httpsUrl, rootPem);
    const received: Array<{ serial: string; pem: string }> = [];
    const refused: number[] = [];
    let killed = false;
    let cut = 0;
    const loop = async (i: number) => {
      for (let n = 0; ; n++) {
        try {
          const res = await api("POST", "/api/v1/certificates", { token, json: { csr: csrs[(i + n) % csrs.length], profile: "tls-server", validity: "1h" } });
          if (res.status === 201) received.push({ serial: res.body.serial, pem: res.body.certificate });
          else refused.push(res.status);
        } catch {
          if (killed) {
            cut++; // the request died with the server
            return;
          }
          throw new Error("a request failed before the server was killed");
        }
      }
    };
    const loops = Array.from({ length: LOOPS }, (_, i) => loop(i));
    // Under load for a moment, then killed with requests in flight.
    const started = Date.now();
    while (received.length < 200 && Date.now() - started < 10_000) await new Promise((r) => setTimeout(r, 50));
    const exited = new Promise((r) => first.child.once("exit", r));
    killed = true;
    first.child.kill("SIGKILL");
    await exited;
    await Promise.all(loops);
    expect(refused).toEqual([]);
    expect(cut).toBe(LOOPS); // every client had a request in flight or being sent
    expect(received.length).toBeGreaterThan(50);

    const second = await serve();
    try {
      const again = apiClient(second.httpsUrl, rootPem);
      const queue = [...received];
      const mismatched: string[] = [];
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          for (let r = queue.pop(); r; r = queue.pop()) {
            const res = await again("GET", `/api/v1/certificates/${r.serial}`, { token });
            if (res.status !== 200 || res.body.certificate !== r.pem) mismatched.push(`${r.serial}: ${res.status}`);
          }
        }),
      );
      expect(mismatched).toEqual([]);
      expect(new Set(received.map((r) => r.serial)).size).toBe(received.length);
      const sql = postgres(db.url, { max: 1, onnotice: () => {} });
      try {
        expect(await sql`select serial, count(*) from certificates group by serial having count(*) > 1`).toHaveLength(0);
        const rows = await sql`select count(*)::int as n from certificates`;
        expect(rows[0]!.n).toBeGreaterThanOrEqual(received.length);
      } finally {
        await sql.end();
      }
    } finally {
      const exited2 = new Promise((r) => second.child.once("exit", r));
      second.child.kill("SIGTERM");
      await exited2;
    }
  });
});
