/**
 * The data directory (embedded token, PIN files, PGlite with its WAL, the
 * control socket, the pid file) is private to the service's user whatever
 * the umask: a first start, the CLI opening the database itself, and a
 * start on a directory an earlier version left open to everyone (which is
 * repaired, with a warning naming what was changed).
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, REPO, runCli } from "./helpers/cli.ts";
import { makeCsr, tempDir } from "./helpers/openssl.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

let parent: string;
let dataDir: string;
let umaskBefore: number;
let t: TestService | undefined;

/** Every path under dir (dir itself as "."), with its permission bits. */
function tree(dir: string): Array<{ path: string; mode: number }> {
  const out: Array<{ path: string; mode: number }> = [];
  const visit = (p: string) => {
    const st = fs.lstatSync(p);
    out.push({ path: path.relative(dir, p) || ".", mode: st.mode & 0o777 });
    if (st.isDirectory()) for (const name of fs.readdirSync(p)) visit(path.join(p, name));
  };
  visit(dir);
  return out;
}

/** What another user could read, write or enter. */
function openToOthers(dir: string): string[] {
  return tree(dir)
    .filter((e) => e.mode & 0o077)
    .map((e) => `${e.path} 0${e.mode.toString(8)}`);
}

async function issueOne(s: TestService): Promise<void> {
  const token = await s.token("issuer", "tls-server");
  const { csr } = makeCsr({ subject: "/CN=perm.example.test", san: "DNS:perm.example.test" });
  const r = await s.api("POST", "/api/v1/certificates", { token, json: { csr, profile: "tls-server" } });
  expect(r.status).toBe(201);
}

beforeAll(() => {
  // A parent any user may enter, so that only the data directory's own permissions protect it.
  parent = tempDir("hsmca-perms-");
  fs.chmodSync(parent, 0o755);
  dataDir = path.join(parent, "data");
  // As in many containers: nothing masked.
  umaskBefore = process.umask(0);
});

afterAll(async () => {
  await t?.stop();
  process.umask(umaskBefore);
  fs.rmSync(parent, { recursive: true, force: true });
});

describe("the data directory", () => {
  it("is private after a first start and issuance under umask 000, and after the CLI opened the database itself", async () => {
    t = await startTestService("pglite", { HSM_CA_DATA_DIR: dataDir });
    await issueOne(t);
    expect(openToOthers(dataDir)).toEqual([]);
    const env = t.env;
    await t.stop();
    t = undefined;
    // The service is stopped: this command opens PGlite itself (its child process has umask 000 too).
    const r = await runCli(["token", "create", "--role", "issuer", "--profile", "tls-server"], env);
    expect(r.code, r.stderr).toBe(0);

    const paths = tree(dataDir).map((e) => e.path);
    // Not vacuous: the token, its PINs and the database are there.
    expect(paths).toEqual(expect.arrayContaining(["hsm/user.pin", "hsm/so.pin", "hsm/softhsm2.conf", "pglite/PG_VERSION", "pglite/global/pg_control"]));
    expect(paths.some((p) => p.startsWith("pglite/pg_wal/"))).toBe(true);
    expect(openToOthers(dataDir)).toEqual([]);
    expect(fs.statSync(dataDir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(dataDir, "pglite/PG_VERSION")).mode & 0o777).toBe(0o600);
  });

  it("left open to everyone by an earlier version, is made private at start, with a warning naming what changed", async () => {
    for (const e of tree(dataDir)) fs.chmodSync(path.join(dataDir, e.path), fs.statSync(path.join(dataDir, e.path)).isDirectory() ? 0o755 : 0o666);
    expect(openToOthers(dataDir).length).toBeGreaterThan(10);

    const lines: string[] = [];
    t = await startTestService("pglite", { HSM_CA_DATA_DIR: dataDir }, (line) => lines.push(line));
    expect(openToOthers(dataDir)).toEqual([]);
    const warning = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => String(l.msg).includes("data directory was readable or writable by other users"));
    expect(warning).toMatchObject({ level: 40, dataDir });
    expect(String(warning!.repaired)).toMatch(/(^|, )\. 0755->0700/);
    expect(String(warning!.repaired)).toMatch(/hsm 0755->0700/);
    expect(warning!.count).toBeGreaterThan(10);

    // What the running service writes from now on is private too.
    await issueOne(t);
    expect(openToOthers(dataDir)).toEqual([]);
  });

  // Needs root (to run as nobody) and a checkout nobody may read: a clone inside a 0700 directory (mktemp -d) is not.
  it.runIf(process.getuid?.() === 0 && nobodyCanRead(BIN))("stops `hsm-ca serve` (run as nobody) in one line when something under it belongs to another user", () => {
    const dir = path.join(parent, "nobodys");
    fs.mkdirSync(path.join(dir, "hsm"), { recursive: true, mode: 0o700 });
    fs.chownSync(dir, 65534, 65534);
    fs.chownSync(path.join(dir, "hsm"), 65534, 65534);
    // Left by someone running it as root once: nobody may not chmod it.
    fs.writeFileSync(path.join(dir, "hsm", "stray"), "x", { mode: 0o644 });
    fs.chmodSync(path.join(dir, "hsm", "stray"), 0o644);
    const r = spawnSync("runuser", ["-u", "nobody", "--", process.execPath, BIN, "serve"], {
      cwd: REPO,
      encoding: "utf8",
      env: { PATH: process.env.PATH ?? "", HOME: "/tmp", HSM_CA_DATA_DIR: dir, HSM_CA_PROFILES_DIR: path.join(REPO, "profiles"), HSM_CA_HTTPS_PORT: "0", HSM_CA_HTTP_PORT: "0" },
      timeout: 60_000,
    });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/^hsm-ca serve: the data directory .* must be private to this user, and .*hsm\/stray cannot be made so \(EPERM\)/);
    // Nothing was created.
    expect(fs.readdirSync(dir).sort()).toEqual(["hsm"]);
    expect(fs.readdirSync(path.join(dir, "hsm"))).toEqual(["stray"]);
  });

  it.runIf(process.getuid?.() === 0)("cannot be read by another user (nobody)", () => {
    for (const file of ["pglite/PG_VERSION", "hsm/user.pin"]) {
      const r = spawnSync("runuser", ["-u", "nobody", "--", "cat", path.join(dataDir, file)], { encoding: "utf8" });
      expect(r.status, `nobody read ${file}`).not.toBe(0);
      expect(r.stderr).toMatch(/Permission denied/);
    }
    // Nor list it.
    expect(spawnSync("runuser", ["-u", "nobody", "--", "ls", dataDir]).status).not.toBe(0);
  });
});

/** Can the user nobody read this file (every directory above it searchable)? */
function nobodyCanRead(file: string): boolean {
  return spawnSync("runuser", ["-u", "nobody", "--", "test", "-r", file]).status === 0;
}
