import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import postgres from "postgres";
import { freePort } from "./ports.ts";

const run = promisify(execFile);

/** Debian's PostgreSQL 15 server tools; HSM_CA_TEST_PG_BIN for another installation. */
export const PG_BIN = process.env.HSM_CA_TEST_PG_BIN ?? "/usr/lib/postgresql/15/bin";
/** The standby's name on the primary: synchronous_standby_names waits for it. */
const STANDBY_NAME = "standby1";

/**
 * A primary and a streaming standby of this test's own, on free loopback
 * ports, with data directories under a temporary directory. PostgreSQL
 * refuses to run as root: as root the tools run as the `postgres` user
 * (runuser), who then owns the directory.
 *
 * With `synchronous`, the primary acknowledges a commit only once the
 * standby has it (synchronous_standby_names = the standby,
 * synchronous_commit = on): what the primary said was committed survives
 * the primary. The standby itself has no synchronous standby to wait for
 * once promoted (else every commit on it would wait for ever).
 */
export interface ReplicatedPostgres {
  primaryPort: number;
  standbyPort: number;
  /** A URL naming both hosts (primary first), to the database `name`, with extra query parameters. */
  url(params?: string): string;
  /** A URL to one server alone. */
  urlOf(port: number): string;
  /** Kills the primary as a crash would (pg_ctl stop -m immediate): no checkpoint, every connection cut. */
  crashPrimary(): Promise<void>;
  /** Promotes the standby and waits until it accepts writes. */
  promoteStandby(): Promise<void>;
  /** Stops both servers (whatever state they are in) and removes everything. Bounded in time. */
  destroy(): Promise<void>;
}

export async function startReplicatedPostgres(options: { database: string; synchronous: boolean }): Promise<ReplicatedPostgres> {
  const asRoot = process.getuid?.() === 0;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "hsmca-pg-replication-"));
  if (asRoot) {
    const { stdout } = await run("id", ["-u", "postgres"]);
    const { stdout: gid } = await run("id", ["-g", "postgres"]);
    fs.chownSync(root, Number(stdout.trim()), Number(gid.trim()));
  }
  const tool = (name: string, args: string[], timeoutMs = 30_000) =>
    asRoot ? run("runuser", ["-u", "postgres", "--", path.join(PG_BIN, name), ...args], { timeout: timeoutMs }) : run(path.join(PG_BIN, name), args, { timeout: timeoutMs });
  const primaryDir = path.join(root, "primary");
  const standbyDir = path.join(root, "standby");
  const [primaryPort, standbyPort] = [await freePort(), await freePort()];
  const started: string[] = [];
  const onPrimary = async (...statements: string[]) => {
    const admin = postgres(`postgres://postgres@127.0.0.1:${primaryPort}/postgres`, { max: 1, onnotice: () => {}, connect_timeout: 10 });
    try {
      for (const statement of statements) await admin.unsafe(statement);
    } finally {
      await admin.end({ timeout: 1 });
    }
  };

  const destroy = async () => {
    // Both at once, each bounded: a test that failed half-way leaves either in any state.
    await Promise.all(started.map((dir) => tool("pg_ctl", ["-D", dir, "-m", "immediate", "-w", "-t", "10", "stop"], 15_000).catch(() => {})));
    fs.rmSync(root, { recursive: true, force: true });
  };
  try {
    await tool("initdb", ["-D", primaryDir, "-U", "postgres", "--auth=trust", "--no-sync", "--no-instructions", "-E", "UTF8", "--locale=C"]);
    const common = [
      "listen_addresses = '127.0.0.1'",
      `unix_socket_directories = '${root}'`,
      "wal_level = replica",
      "max_wal_senders = 4",
      "hot_standby = on",
      // A scratch cluster: durability against a power cut is not what is tested here, replication is.
      "fsync = off",
      "full_page_writes = off",
      "shared_buffers = 16MB",
      "max_connections = 60",
    ];
    fs.appendFileSync(path.join(primaryDir, "postgresql.conf"), [...common, `port = ${primaryPort}`].join("\n") + "\n");
    await tool("pg_ctl", ["-D", primaryDir, "-l", path.join(root, "primary.log"), "-w", "-t", "30", "start"]);
    started.push(primaryDir);
    await onPrimary(`create database ${options.database}`);
    // -R writes primary_conninfo (with our application_name, which synchronous_standby_names names) and standby.signal.
    await tool("pg_basebackup", ["-d", `host=127.0.0.1 port=${primaryPort} user=postgres application_name=${STANDBY_NAME}`, "-D", standbyDir, "-R", "-X", "stream", "--checkpoint=fast", "--no-sync"]);
    // Later lines win: the standby's own port, and no synchronous standby of its own once promoted.
    fs.appendFileSync(path.join(standbyDir, "postgresql.conf"), [`port = ${standbyPort}`, "synchronous_standby_names = ''"].join("\n") + "\n");
    await tool("pg_ctl", ["-D", standbyDir, "-l", path.join(root, "standby.log"), "-w", "-t", "30", "start"]);
    started.push(standbyDir);
    // Only now: a primary waiting for a synchronous standby that is not there yet commits nothing (create database included).
    if (options.synchronous) await onPrimary(`alter system set synchronous_standby_names = '${STANDBY_NAME}'`, "alter system set synchronous_commit = on", "select pg_reload_conf()");
  } catch (err) {
    const logs = ["primary.log", "standby.log"].map((f) => fs.existsSync(path.join(root, f)) && fs.readFileSync(path.join(root, f), "utf8").slice(-2000)).filter(Boolean);
    await destroy();
    throw new Error(`cannot set up a primary and a standby with ${PG_BIN}: ${(err as Error).message} ${(err as { stderr?: string }).stderr ?? ""}\n${logs.join("\n")}`);
  }

  const urlOf = (port: number) => `postgres://postgres@127.0.0.1:${port}/${options.database}`;
  return {
    primaryPort,
    standbyPort,
    url: (params = "") => `postgres://postgres@127.0.0.1:${primaryPort},127.0.0.1:${standbyPort}/${options.database}${params ? `?${params}` : ""}`,
    urlOf,
    crashPrimary: async () => {
      await tool("pg_ctl", ["-D", primaryDir, "-m", "immediate", "-w", "-t", "10", "stop"], 15_000);
    },
    promoteStandby: async () => {
      await tool("pg_ctl", ["-D", standbyDir, "-w", "-t", "30", "promote"]);
    },
    destroy,
  };
}
