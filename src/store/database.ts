import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import { sql } from "drizzle-orm";
import postgres from "postgres";
import { routeConnections } from "./postgres-hosts.ts";
import { openPool } from "./postgres-pool.ts";
import { initialiseInChild } from "./pglite-first-start.ts";
import { PrivateNodeFS } from "./private-node-fs.ts";
import * as schema from "./schema.ts";

/** Both drivers give the same drizzle API: everything above this file sees only this type. */
export type Database = PgDatabase<PgQueryResultHKT, typeof schema>;

export interface Store {
  db: Database;
  kind: "postgres" | "pglite";
  /** Throws when the database cannot answer. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export class DatabaseBusyError extends Error {}

const MIGRATIONS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../drizzle");
/** PostgreSQL settings of the embedded database, at every start. */
const PGLITE_SETTINGS = [
  // PGlite's default of 128MB grows its WebAssembly memory (which never shrinks) from 128 to 189 MiB. A CA's working
  // set is its indexes' upper pages; the rest of the files stay in the OS page cache (PGlite reads them through node:fs).
  "shared_buffers=32MB",
];
/** Serialises migrations between replicas starting at once. */
const MIGRATION_LOCK = 0x68736d63; // "hsmc"

export interface StoreOptions {
  databaseUrl?: string;
  dataDir: string;
  /**
   * PostgreSQL only: how long a query waits before the pool checks the
   * database is there at all, and the server's statement timeout (see
   * postgres-pool.ts). Unset: no bound, for one-shot commands (backup,
   * restore, audit verify) whose statements may legitimately take long.
   */
  bounds?: { answerTimeoutMs: number; statementTimeoutMs: number };
}

export async function openStore(options: StoreOptions): Promise<Store> {
  return options.databaseUrl ? openPostgres(options.databaseUrl, options.bounds ?? { answerTimeoutMs: 0, statementTimeoutMs: 0 }) : openPglite(options.dataDir);
}

async function openPostgres(url: string, bounds: { answerTimeoutMs: number; statementTimeoutMs: number }): Promise<Store> {
  await migrate(url);
  const pool = openPool(url, { max: 16, ...bounds });
  const db = drizzlePostgres(pool.sql, { schema }) as unknown as Database;
  return { db, kind: "postgres", ping: pool.ping, close: pool.end };
}

/**
 * Migrations run on a connection of their own, exempt from the query bound:
 * a migration on a big table, or the wait for another replica migrating at
 * the same time, may take long. The connect timeout and keepalive still apply.
 */
async function migrate(url: string): Promise<void> {
  // Two connections: one holds the (session) lock, the migrator runs on the other.
  const route = routeConnections(url, { connectTimeoutMs: 5_000, keepAliveS: 10 });
  const client = postgres(route.url, { ...route.options, max: 2, onnotice: () => {}, connect_timeout: 5, keep_alive: 10 } as Parameters<typeof postgres>[1]);
  try {
    const lock = await client.reserve();
    try {
      await lock`select pg_advisory_lock(${MIGRATION_LOCK})`;
      await migratePostgres(drizzlePostgres(client), { migrationsFolder: MIGRATIONS });
    } finally {
      await lock`select pg_advisory_unlock(${MIGRATION_LOCK})`.catch(() => {});
      lock.release();
    }
  } finally {
    await client.end({ timeout: 1 });
  }
}

/**
 * PGlite is single-process: a pid file marks the data directory as taken.
 * A second process (the CLI while the service runs) goes through the
 * service's control socket instead of opening the directory.
 */
async function openPglite(dataDir: string): Promise<Store> {
  const dir = path.join(dataDir, "pglite");
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const release = takePidLock(path.join(dataDir, "pglite.pid"));
  let client: PGlite;
  try {
    await initialiseInChild(dir);
    client = await PGlite.create({ fs: new PrivateNodeFS(dir), postgresqlconf: PGLITE_SETTINGS });
    const db = drizzlePglite(client, { schema });
    await migratePglite(db, { migrationsFolder: MIGRATIONS });
  } catch (err) {
    release();
    throw err;
  }
  const db = drizzlePglite(client, { schema }) as unknown as Database;
  return {
    db,
    kind: "pglite",
    ping: async () => {
      await db.execute(sql`select 1`);
    },
    close: async () => {
      await client.close();
      release();
    },
  };
}

function takePidLock(file: string): () => void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: "wx", mode: 0o600 });
      return () => fs.rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const owner = Number(fs.readFileSync(file, "utf8"));
      if (owner && owner !== process.pid && isAlive(owner)) {
        throw new DatabaseBusyError(`the embedded database in ${path.dirname(file)} is in use by process ${owner}`);
      }
      fs.rmSync(file, { force: true }); // left by a process that died
    }
  }
  throw new DatabaseBusyError(`cannot lock the embedded database in ${path.dirname(file)}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
