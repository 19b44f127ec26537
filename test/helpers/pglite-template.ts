import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { drizzle } from "drizzle-orm/pglite";
import { migrate } from "drizzle-orm/pglite/migrator";
import { PrivateNodeFS } from "../../src/store/private-node-fs.ts";
import { REPO } from "./cli.ts";

/**
 * An embedded database as the service leaves it after its first openStore:
 * PGlite's initdb done and every migration applied, nothing else. initdb
 * takes 7-15 s of WASM on this 2-core machine, a copy well under one, so
 * test services on PGlite start from a copy of one such directory, made
 * once per PGlite version and set of migrations (kept in the temp
 * directory, named by their hash). The first start on an empty directory
 * stays covered where it matters (first-start, cli, data-dir-permissions,
 * backup), which do not use this.
 */
export async function copyMigratedPglite(dataDir: string): Promise<void> {
  const template = await migratedPgliteTemplate();
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  fs.cpSync(template, path.join(dataDir, "pglite"), { recursive: true });
}

let made: Promise<string> | undefined;

function migratedPgliteTemplate(): Promise<string> {
  return (made ??= makeTemplate());
}

async function makeTemplate(): Promise<string> {
  const migrations = path.join(REPO, "drizzle");
  const hash = crypto.createHash("sha256");
  hash.update(fs.readFileSync(path.join(REPO, "node_modules/@electric-sql/pglite/package.json")));
  for (const f of fs.readdirSync(migrations, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name)).sort()) {
    hash.update(path.relative(migrations, f)).update(fs.readFileSync(f));
  }
  const template = path.join(os.tmpdir(), `hsmca-pglite-template-${hash.digest("hex").slice(0, 16)}`);
  if (fs.existsSync(path.join(template, "PG_VERSION"))) return template;

  // Built beside, then renamed into place: another test process may be building the same one.
  const building = fs.mkdtempSync(`${template}.building-`);
  const previous = process.umask(0o077); // as the service creates its data directory: private
  try {
    const client = await PGlite.create({ fs: new PrivateNodeFS(path.join(building, "pglite")) });
    await migrate(drizzle(client), { migrationsFolder: migrations });
    await client.close();
  } finally {
    process.umask(previous);
  }
  try {
    fs.renameSync(path.join(building, "pglite"), template);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ENOTEMPTY" && code !== "EEXIST") throw err; // someone else's is in place: use that
  }
  fs.rmSync(building, { recursive: true, force: true });
  return template;
}
