import fs from "node:fs";
import path from "node:path";

/**
 * The data directory holds the embedded token, its PIN files, the embedded
 * database (whose WAL carries token hashes and certificates), the control
 * socket and the pid file: nothing there is for another local user.
 *
 * PGlite writes its files through Emscripten's NODEFS, which creates them
 * 0666 and directories 0777 minus the umask, whatever PostgreSQL asks for;
 * under a permissive umask (0 in many containers, 022 on most desktops)
 * other users could read the WAL or rewrite the catalogs. So a process that
 * opens the data directory runs with umask 0077 while it does, and checks
 * the tree at start: group and other permission bits found on anything
 * under it are removed (repaired, not refused, so that an upgrade from a
 * version that left them keeps running), and reported. Only what cannot be
 * repaired (a file of another user) stops the start.
 */

/** Group and other permission bits: none may be set on anything under the data directory. */
const SHARED_BITS = 0o077;

export class DataDirError extends Error {}

export interface Repair {
  /** Relative to the data directory ("." for the directory itself). */
  path: string;
  /** Permission bits before and after, in octal ("0666" -> "0600"). */
  from: string;
  to: string;
}

/**
 * Sets the process umask to 0077 (files 0600 and directories 0700 at most)
 * for everything created from now on; returns a function that restores the
 * previous umask.
 */
export function createPrivately(): () => void {
  if (privateUsers++ === 0) umaskBefore = process.umask(SHARED_BITS);
  let restored = false;
  return () => {
    if (restored) return;
    restored = true;
    // Several services in one process (tests): the umask comes back when the last one closes.
    if (--privateUsers === 0) process.umask(umaskBefore);
  };
}

let privateUsers = 0;
let umaskBefore = 0;

/**
 * Removes group and other permissions from the data directory and
 * everything under it, and returns what it changed (empty when all was
 * private already, or when the directory does not exist yet). Symbolic
 * links are not followed: what they point to is not the data directory's.
 * Throws DataDirError when something cannot be made private.
 */
export function makeDataDirPrivate(dataDir: string): Repair[] {
  const repairs: Repair[] = [];
  const visit = (file: string) => {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return; // gone meanwhile (a WAL segment recycled)
      throw cannot(dataDir, file, err);
    }
    if (st.isSymbolicLink()) return;
    const mode = st.mode & 0o7777;
    if (mode & SHARED_BITS) {
      const to = mode & ~SHARED_BITS;
      try {
        fs.chmodSync(file, to);
      } catch (err) {
        throw cannot(dataDir, file, err);
      }
      repairs.push({ path: path.relative(dataDir, file) || ".", from: octal(mode), to: octal(to) });
    }
    if (!st.isDirectory()) return;
    let entries: string[];
    try {
      entries = fs.readdirSync(file);
    } catch (err) {
      throw cannot(dataDir, file, err);
    }
    for (const name of entries) visit(path.join(file, name));
  };
  if (fs.existsSync(dataDir)) visit(dataDir);
  return repairs;
}

/** A short description of repairs for one log line or message: the first few paths and how many in all. */
export function describeRepairs(repairs: Repair[], shown = 10): string {
  const listed = repairs.slice(0, shown).map((r) => `${r.path} ${r.from}->${r.to}`);
  const more = repairs.length > shown ? `, and ${repairs.length - shown} more` : "";
  return listed.join(", ") + more;
}

function octal(mode: number): string {
  return "0" + mode.toString(8).padStart(3, "0");
}

function cannot(dataDir: string, file: string, err: unknown): DataDirError {
  const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  return new DataDirError(
    `the data directory ${dataDir} must be private to this user, and ${file} cannot be made so (${code}): ` +
      `chown it to this user (uid ${process.getuid?.() ?? "?"}) and remove group and other permissions (chmod -R go-rwx)`,
  );
}
