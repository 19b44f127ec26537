import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import postgres from "postgres";
import { loadConfig, type Config } from "../../src/config.ts";
import { createLogger } from "../../src/logger.ts";
import { startServiceWithCli } from "../../src/serve.ts";
import type { Service } from "../../src/service.ts";
import { Background, run, sleep, tempDir } from "./proc.ts";
import { CLK_TCK } from "./cpu.ts";
import { log, REPO } from "./report.ts";

/** The service and its database for a benchmark: a temp data dir, PostgreSQL when it answers, else PGlite. */

/** The PostgreSQL server the project's machines have; the same override as the tests. */
export const PG_BASE_URL = process.env.HSM_CA_BENCH_DATABASE_URL ?? process.env.HSM_CA_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";

export interface BenchDatabase {
  kind: "postgres" | "pglite";
  /** For PostgreSQL: a fresh database's URL. */
  url?: string;
  /** The server's version, for the record. */
  version: string;
  drop(): Promise<void>;
}

/**
 * A fresh PostgreSQL database when the server answers (within a few
 * seconds), else the embedded PGlite. HSM_CA_BENCH_DB=pglite forces PGlite.
 */
export async function benchDatabase(want?: "postgres" | "pglite"): Promise<BenchDatabase> {
  const pglite: BenchDatabase = { kind: "pglite", version: "PGlite (embedded)", drop: async () => {} };
  if ((want ?? process.env.HSM_CA_BENCH_DB) === "pglite") return pglite;
  const admin = postgres(PG_BASE_URL, { max: 1, onnotice: () => {}, connect_timeout: 3 });
  const name = `hsmca_bench_${crypto.randomBytes(5).toString("hex")}`;
  try {
    const [v] = await admin`select current_setting('server_version') as v`;
    await admin.unsafe(`create database ${name}`);
    const url = new URL(PG_BASE_URL);
    url.pathname = `/${name}`;
    return {
      kind: "postgres",
      url: url.toString(),
      version: `PostgreSQL ${v!.v}`,
      drop: async () => {
        await admin.unsafe(`drop database if exists ${name} with (force)`);
        await admin.end({ timeout: 5 });
      },
    };
  } catch (err) {
    log(`PostgreSQL at ${PG_BASE_URL} is not usable (${(err as Error).message}): using PGlite`);
    await admin.end({ timeout: 1 }).catch(() => {});
    return pglite;
  }
}

export interface BenchService {
  service: Service;
  config: Config;
  /** The environment that opens the same data dir and database (for child processes). */
  env: Record<string, string>;
  dataDir: string;
  db: BenchDatabase;
  /** Stops the service (idempotent); the data stays until cleanup(). */
  stop(): Promise<void>;
  /** Stops, drops the database and removes the data dir. */
  cleanup(): Promise<void>;
}

/** The service as a user runs it, on a temp data dir, loopback listeners on free ports. */
export async function startBenchService(extraEnv: Record<string, string> = {}, database?: "postgres" | "pglite"): Promise<BenchService> {
  const db = await benchDatabase(database);
  const dataDir = tempDir("hsmca-bench-");
  const env: Record<string, string> = {
    HSM_CA_DATA_DIR: dataDir,
    HSM_CA_PROFILES_DIR: path.join(REPO, "profiles"),
    HSM_CA_HTTPS_HOST: "127.0.0.1",
    HSM_CA_HTTPS_PORT: "0",
    HSM_CA_HTTP_HOST: "127.0.0.1",
    HSM_CA_HTTP_PORT: "0",
    HSM_CA_LOG_LEVEL: "error",
    // The benchmark is the load: per-token limits would measure the limiter, not the CA.
    HSM_CA_RATE_LIMIT_PER_TOKEN: "off",
    ...(db.url ? { DATABASE_URL: db.url } : {}),
    ...extraEnv,
  };
  const config = loadConfig(env);
  let service: Service;
  try {
    service = await startServiceWithCli(config, createLogger("error"));
  } catch (err) {
    await db.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await service.close();
  };
  return {
    service,
    config,
    env,
    dataDir,
    db,
    stop,
    cleanup: async () => {
      await stop();
      await db.drop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}


/** An issuer token for tls-server, made by `hsm-ca token create` against the service's data dir and database, as a user makes one. */
export async function issuerTokenFromCli(env: Record<string, string>): Promise<string> {
  const token = await run(process.execPath, [path.join(REPO, "scripts/hsm-ca.mjs"), "token", "create", "--role", "issuer", "--profile", "tls-server"], {
    env: { ...process.env, ...env },
    check: true,
  });
  return token.stdout.trim().split("\n").pop()!.trim();
}

export interface WorkersService {
  httpsUrl: string;
  httpUrl: string;
  /** Environment that opens the same data dir and database (the CLI, a database client). */
  env: Record<string, string>;
  db: BenchDatabase;
  /** The primary's process id. */
  pid: number;
  /** RSS of the primary and its workers together, KiB. */
  rssKiB(): number;
  /** CPU ms (user + system) the primary and its live workers have used. */
  cpuMs(): number;
  cleanup(): Promise<void>;
}

/**
 * `hsm-ca serve` as a user runs it, in its own processes: HSM_CA_WORKERS
 * workers (node:cluster) on a fresh PostgreSQL database and data dir,
 * loopback listeners on the given ports.
 */
export async function startWorkersService(workers: number, httpsPort: number, httpPort: number, nodeArgs: string[] = []): Promise<WorkersService> {
  const db = await benchDatabase("postgres");
  if (db.kind !== "postgres") throw new Error("workers need PostgreSQL");
  const dataDir = tempDir("hsmca-bench-workers-");
  const env: Record<string, string> = {
    HSM_CA_DATA_DIR: dataDir,
    HSM_CA_PROFILES_DIR: path.join(REPO, "profiles"),
    HSM_CA_HTTPS_HOST: "127.0.0.1",
    HSM_CA_HTTPS_PORT: String(httpsPort),
    HSM_CA_HTTP_HOST: "127.0.0.1",
    HSM_CA_HTTP_PORT: String(httpPort),
    HSM_CA_LOG_LEVEL: "info",
    HSM_CA_RATE_LIMIT_PER_TOKEN: "off",
    HSM_CA_WORKERS: String(workers),
    DATABASE_URL: db.url!,
  };
  const server = Background.start("hsm-ca serve", process.execPath, [...nodeArgs, path.join(REPO, "scripts/hsm-ca.mjs"), "serve"], {
    env: { ...process.env, ...env },
  });
  const cleanup = async () => {
    await server.stop();
    await db.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  };
  // The service logs (pino) to stderr: watch everything it printed.
  const deadline = Date.now() + 120_000;
  const serving = workers > 1 ? '"msg":"hsm-ca workers are serving"' : '"msg":"hsm-ca is serving"';
  while (!server.output.join("").includes(serving)) {
    if (!server.alive || Date.now() > deadline) {
      const out = server.output.join("").slice(-1500);
      await cleanup();
      throw new Error(`hsm-ca serve with ${workers} workers did not start: ${out}`);
    }
    await sleep(200);
  }
  const pid = server.child.pid!;
  return {
    httpsUrl: `https://127.0.0.1:${httpsPort}`,
    httpUrl: `http://127.0.0.1:${httpPort}`,
    env,
    db,
    pid,
    rssKiB: () => treeRssKiB(pid),
    cpuMs: () => treeCpuMs(pid),
    cleanup,
  };
}

/** A process and its children (Linux /proc); none once it is gone. */
function processTree(pid: number): number[] {
  try {
    const children = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
    return [pid, ...(children ? children.split(/\s+/).map(Number) : [])];
  } catch {
    return [];
  }
}

/** CPU ms of a process and its children (Linux /proc/<pid>/stat utime + stime). */
function treeCpuMs(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // exited meanwhile
    }
  }
  return (ticks * 1000) / CLK_TCK;
}

/** RSS of a process and its children (Linux /proc), KiB. */
function treeRssKiB(pid: number): number {
  let total = 0;
  for (const p of processTree(pid)) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${p}/status`, "utf8"));
      total += m ? Number(m[1]) : 0;
    } catch {
      // exited meanwhile
    }
  }
  return total;
}
