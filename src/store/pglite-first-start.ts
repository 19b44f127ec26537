import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import { PrivateNodeFS } from "./private-node-fs.ts";

/**
 * The embedded database's first start (initdb) runs in a child process of
 * its own. PGlite's initdb is a second WebAssembly instance; measured on
 * PGlite 0.5, a first start left the process at about 860 MiB of RSS (630
 * MiB of it initdb's memories and buffers, garbage V8 collected only under
 * later load), against about 250 MiB when PGlite opens an existing
 * directory. Done in a child, that memory goes back to the system when the
 * child exits, and the service opens a directory that already exists.
 */

const FIRST_START_TIMEOUT_MS = 120_000;
const THIS_FILE = fileURLToPath(import.meta.url);

/** Runs PGlite's initdb on `dir` in a child process, unless `dir` already holds a database. */
export async function initialiseInChild(dir: string): Promise<void> {
  if (fs.existsSync(path.join(dir, "PG_VERSION"))) return;
  // The child runs this file's TypeScript as the service does: through tsx's loader, found from here (not from the cwd).
  const tsx = import.meta.resolve("tsx");
  await new Promise<void>((resolve, reject) => {
    execFile(process.execPath, ["--import", tsx, THIS_FILE, dir], { timeout: FIRST_START_TIMEOUT_MS }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const why = stderr.trim().split("\n").filter(Boolean).at(-1) ?? err.message;
      reject(new Error(`cannot create the embedded database in ${dir}: ${why}`));
    });
  });
}

async function firstStart(dir: string): Promise<void> {
  const client = await PGlite.create({ fs: new PrivateNodeFS(dir) });
  await client.close();
}

if (process.argv[1] && path.resolve(process.argv[1]) === THIS_FILE) {
  firstStart(process.argv[2]!).then(
    () => process.exit(0),
    (err: Error) => {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    },
  );
}
