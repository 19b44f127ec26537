import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decryptArchive } from "../src/backup/archive.ts";
import { openStore } from "../src/store/database.ts";
import { exportTables } from "../src/store/dump.ts";
import { REPO, runCli, runCliInProcess, type CliResult } from "./helpers/cli.ts";
import { makeCsr, tempDir } from "./helpers/openssl.ts";
import { copyMigratedPglite } from "./helpers/pglite-template.ts";
import { createTestDatabase } from "./helpers/postgres.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

/**
 * Backup and restore as an operator runs them, with the real CLI, the
 * embedded SoftHSM2 token and PGlite or PostgreSQL: an encrypted archive, a
 * restore drill that proves every key still signs, and a real restore.
 */
const PASSPHRASE = "correct horse battery staple 4711";
const root = tempDir("hsmca-backup-");
const passFile = path.join(root, "passphrase");
fs.writeFileSync(passFile, PASSPHRASE + "\n", { mode: 0o600 });
const withPassphrase = (env: Record<string, string>) => ({ ...env, HSM_CA_BACKUP_PASSPHRASE_FILE: passFile });
const profiles = { HSM_CA_PROFILES_DIR: path.join(REPO, "profiles") };

/** Every secret that must never be printed, and every output, checked at the end. */
const secrets = new Set<string>([PASSPHRASE]);
const outputs: CliResult[] = [];
function rememberPins(dataDir: string) {
  for (const f of ["user.pin", "so.pin"]) secrets.add(fs.readFileSync(path.join(dataDir, "hsm", f), "utf8").trim());
}
/** The drills' scratch directories go here (TMPDIR), so that other test runs' drills elsewhere in /tmp do not count. */
const drillTmp = path.join(root, "tmp");
fs.mkdirSync(drillTmp);
async function cli(args: string[], env: Record<string, string>, timeoutMs = 110_000): Promise<CliResult> {
  const r = await runCli(args, { TMPDIR: drillTmp, ...env }, timeoutMs);
  outputs.push(r);
  return r;
}

/** The summary of `hsm-ca status`: each CA's first line, key line and fingerprint. */
function statusSummary(stdout: string): string[] {
  return stdout.split("\n").filter((l) => /^(ROOT|INTERMEDIATE) CA|^\s+(key|sha256)\s/.test(l));
}

function drillLines(stdout: string) {
  return stdout.split("\n").filter((l) => /^(PASS|FAIL|SKIP)  /.test(l));
}

const UNDECRYPTABLE = "hsm-ca restore: the archive cannot be decrypted: wrong passphrase or corrupted file";

afterAll(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

/**
 * The scenarios are independent and mostly wait on child processes: they
 * run side by side (concurrent suites), each one's steps in order. Steps
 * get twice the usual time because the three share the machine.
 */
function scenario(name: string, steps: () => void) {
  describe.concurrent(name, () => {
    describe.sequential("in order", { timeout: 120_000 }, steps);
  });
}

scenario("on PGlite, no service running", () => {
  const dataA = path.join(root, "a");
  const envA = { HSM_CA_DATA_DIR: dataA, ...profiles };
  const archive = path.join(root, "a.hsmca");
  let statusA = "";

  beforeAll(async () => {
    // The embedded database initialised and migrated beforehand (PGlite's initdb is slow; init on an
    // empty directory is tested in cli.test.ts, restores into empty directories below).
    await copyMigratedPglite(dataA);
    // An RSA intermediate beside the P-384 root: the drill verifies both kinds of signature.
    const init = await cli(["init", "--intermediate-algorithm", "rsa-2048"], envA, 120_000);
    expect(init.code, init.stderr).toBe(0);
    rememberPins(dataA);
    expect((await cli(["token", "create", "--role", "admin"], envA)).code).toBe(0);
    statusA = (await cli(["status"], envA)).stdout;
  });

  it("refuses to back up without a passphrase, writing nothing", async () => {
    const r = await cli(["backup", archive], envA);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(/^hsm-ca backup: no backup passphrase: set HSM_CA_BACKUP_PASSPHRASE_FILE/);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(fs.existsSync(archive)).toBe(false);
  });

  it("writes an encrypted 0600 archive", async () => {
    const r = await cli(["backup", archive], withPassphrase(envA));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Wrote .*a\.hsmca \(\d+ bytes, mode 0600\): \d+ tables with \d+ rows, and the embedded token "hsm-ca"/);
    expect(fs.statSync(archive).mode & 0o777).toBe(0o600);
    const bytes = fs.readFileSync(archive);
    expect(bytes.subarray(0, 14).toString()).toBe("HSMCA-BACKUP-1");
    // Nothing readable inside: not the certificates, not the PINs.
    expect(bytes.includes("CERTIFICATE")).toBe(false);
    for (const s of secrets) expect(bytes.includes(s)).toBe(false);
    expect(fs.readdirSync(root).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  it("passes the restore drill into nothing: every key signs on the restored token", async () => {
    const nowhere = path.join(root, "nothing-here");
    const r = await cli(["restore", "--verify", archive], withPassphrase({ HSM_CA_DATA_DIR: nowhere, ...profiles }));
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const lines = drillLines(r.stdout);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^PASS  root\s+CN=hsm-ca Root CA, O=hsm-ca  key hsm-ca\/root\/\S+  ecdsa-p384$/);
    expect(lines[1]).toMatch(/^PASS  intermediate\s+CN=hsm-ca Issuing CA 1, O=hsm-ca  key hsm-ca\/intermediate\/\S+  rsa-2048$/);
    for (const label of statusA.match(/hsm-ca\/(root|intermediate)\/\S+/g)!) expect(r.stdout).toContain(label);
    expect(r.stdout).toMatch(/^PASS: all 2 keys signed on the restored token and verified against their certificates\.$/m);
    expect(fs.existsSync(nowhere)).toBe(false);
  });

  it("fails on a flipped byte, a truncated file or a wrong passphrase with one line and a non-zero exit", async () => {
    const damages: Array<[string, (b: Buffer) => Buffer]> = [
      ["flipped", (b) => Buffer.from(b.map((x, i) => (i === Math.floor(b.length / 2) ? x ^ 0x01 : x)))],
      ["flipped-header", (b) => Buffer.from(b.map((x, i) => (i === 30 ? x ^ 0x80 : x)))],
      ["truncated", (b) => b.subarray(0, b.length - 100)],
      ["cut-in-header", (b) => b.subarray(0, 40)],
    ];
    const elsewhere = { HSM_CA_DATA_DIR: path.join(root, "x"), ...profiles };
    const wrong = "not the passphrase 0815";
    const runs = [
      ...damages.map(([name, damage]) => {
        const file = path.join(root, `${name}.hsmca`);
        fs.writeFileSync(file, damage(fs.readFileSync(archive)));
        return cli(["restore", "--verify", file], withPassphrase(elsewhere));
      }),
      cli(["restore", "--verify", archive], { ...elsewhere, HSM_CA_BACKUP_PASSPHRASE: wrong }),
    ];
    for (const r of await Promise.all(runs)) {
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toBe(UNDECRYPTABLE);
      expect(r.stdout).toBe("");
      expect(r.stderr).not.toContain(wrong);
    }
  });

  it("refuses to restore over an existing CA without --force", async () => {
    const tokenFiles = listFiles(path.join(dataA, "hsm"));
    const r = await cli(["restore", archive], withPassphrase(envA));
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(/^hsm-ca restore: a CA exists already in the embedded database in .*: --force replaces it$/);
    expect(listFiles(path.join(dataA, "hsm"))).toEqual(tokenFiles);
  });

  it("restores into an empty data directory: status shows the same CAs and the tables as they were", async () => {
    const dataB = path.join(root, "b");
    const envB = { HSM_CA_DATA_DIR: dataB, ...profiles };
    const r = await cli(["restore", archive], withPassphrase(envB));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Restored \d+ tables \(\d+ rows\) into the embedded database in .*\/b\./);
    expect(fs.statSync(path.join(dataB, "hsm/user.pin")).mode & 0o777).toBe(0o600);
    const status = await cli(["status"], envB);
    expect(status.code, status.stderr).toBe(0);
    expect(statusSummary(status.stdout)).toEqual(statusSummary(statusA));
    expect(status.stdout.match(/provenance\s+local=true sensitive=true extractable=false neverExtractable=true/g)).toHaveLength(2);

    // The tables came back exactly as they were written (timestamps to the microsecond).
    const manifest = await decryptArchive(fs.readFileSync(archive), PASSPHRASE);
    const store = await openStore({ dataDir: dataB });
    try {
      expect(await exportTables(store.db)).toEqual(manifest.database.tables);
    } finally {
      await store.close();
    }
  });

  it("and the restored keys pass a drill of a new backup", async () => {
    const envB = { HSM_CA_DATA_DIR: path.join(root, "b"), ...profiles };
    const again = path.join(root, "b.hsmca");
    expect((await cli(["backup", again], withPassphrase(envB))).code).toBe(0);
    const drill = await cli(["restore", "--verify", again], withPassphrase(envB));
    expect(drill.code, drill.stdout + drill.stderr).toBe(0);
    expect(drillLines(drill.stdout).every((l) => l.startsWith("PASS"))).toBe(true);
  });

  it("with --force replaces the CA and keeps the old token directory aside", async () => {
    const r = await cli(["restore", archive, "--force"], withPassphrase(envA));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/The token directory that was there is kept in .*\/hsm\.replaced-/);
    expect(fs.readdirSync(dataA).filter((f) => f.startsWith("hsm.replaced-"))).toHaveLength(1);
    const status = await cli(["status"], envA);
    expect(statusSummary(status.stdout)).toEqual(statusSummary(statusA));
  });

});

scenario("while the service runs on PGlite", () => {
  let t: TestService;
  const archive = path.join(root, "service.hsmca");

  beforeAll(async () => {
    t = await startTestService("pglite");
    rememberPins(t.config.dataDir);
    const admin = await t.token("admin");
    const { csr } = makeCsr({ subject: "/CN=app.example.test", san: "DNS:app.example.test" });
    const res = await t.api("POST", "/api/v1/certificates", { token: admin, json: { csr, profile: "tls-server", validity: "24h" } });
    expect(res.status, res.text).toBe(201);
    // An EAB key: sealed under a secret key on the token, which the backup must carry too.
    const eab = await runCliInProcess(["acme", "eab", "create"], t.env);
    outputs.push(eab);
    expect(eab.code, eab.stderr).toBe(0);
    // A signed checkpoint, so that the token carries the audit anchor.
    expect(await t.service.ctx.audit!.checkpoint()).toMatchObject({ seq: expect.any(Number), keyLabel: expect.any(String) });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it("backs up through the control socket, and the drill checks the CA and OCSP responder keys and the EAB wrapping key", async () => {
    const r = await cli(["backup", archive], withPassphrase(t.env));
    expect(r.code, r.stderr).toBe(0);
    expect((await fetch(`${t.service.httpUrl}/healthz`)).status).toBe(200); // still serving
    const drill = await cli(["restore", "--verify", archive], withPassphrase(t.env));
    expect(drill.code, drill.stdout + drill.stderr).toBe(0);
    const lines = drillLines(drill.stdout);
    expect(lines.filter((l) => /^PASS  (root|intermediate) /.test(l))).toHaveLength(2);
    expect(lines.filter((l) => /^PASS  ocsp\s+CN=.* OCSP Responder  key hsm-ca\/ocsp\/\S+  ecdsa-p256$/.test(l)).length).toBeGreaterThanOrEqual(1);
    // The restored token opens the sealed EAB HMAC key: EAB still works after a restore.
    expect(lines).toContain("PASS  eab           1 sealed EAB HMAC keys  key hsm-ca eab wrapping key  aes-256-gcm");
    expect(lines.every((l) => l.startsWith("PASS"))).toBe(true);
    expect(drill.stdout).toMatch(/^PASS: all \d+ keys work on the restored token: signatures verified against their certificates, EAB keys opened\.$/m);
  });

  it("has every table in the archive, with the issued certificate, CRLs and OCSP responses", async () => {
    const manifest = await decryptArchive(fs.readFileSync(archive), PASSPHRASE);
    const tables = manifest.database.tables.tables;
    expect(tables.certificates!.rows.some((row) => row.includes("CN=app.example.test"))).toBe(true);
    expect(tables.crls!.rows.length).toBeGreaterThan(0);
    expect(manifest.hsm.kind).toBe("softhsm2");
  });

  it("restores elsewhere, and the audit log verifies against the restored token's anchor", async () => {
    const envS = { HSM_CA_DATA_DIR: path.join(root, "s"), ...profiles };
    const r = await cli(["restore", archive], withPassphrase(envS));
    expect(r.code, r.stderr).toBe(0);
    const verify = await cli(["audit", "verify", "--check-keys"], envS);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect(verify.stdout).toMatch(/^OK: \d+ entries \(seq 1\.\.\d+\), [1-9]\d* signed checkpoints, HSM anchor at seq \d+; head [0-9a-f]{64}\n$/);
  });

  it("refuses a real restore into the running service's data directory", async () => {
    const r = await cli(["restore", archive, "--force"], withPassphrase(t.env));
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(/^hsm-ca restore: the embedded database in .* is in use by process \d+: stop the service before restoring$/);
    expect((await fetch(`${t.service.httpUrl}/healthz`)).status).toBe(200);
  });
});

scenario("on PostgreSQL", () => {
  let source: Awaited<ReturnType<typeof createTestDatabase>>;
  let target: Awaited<ReturnType<typeof createTestDatabase>>;
  let envP: Record<string, string>;
  const dataP = path.join(root, "p");
  const archive = path.join(root, "p.hsmca");
  let drillStdout = "";
  beforeAll(async () => {
    source = await createTestDatabase();
    target = await createTestDatabase();
    envP = { HSM_CA_DATA_DIR: dataP, DATABASE_URL: source.url, ...profiles };
    expect((await cli(["init"], envP, 120_000)).code).toBe(0);
    rememberPins(dataP);
  });
  afterAll(async () => {
    await source?.drop();
    await target?.drop();
  });

  it("backs up and passes the drill", async () => {
    const backup = await cli(["backup", archive], withPassphrase(envP));
    expect(backup.code, backup.stderr).toBe(0);
    const drill = await cli(["restore", "--verify", archive], withPassphrase(envP));
    expect(drill.code, drill.stdout + drill.stderr).toBe(0);
    expect(drill.stdout).toMatch(/: the embedded SoftHSM2 token "hsm-ca", tables from postgres\./);
    expect(drillLines(drill.stdout)).toHaveLength(2);
    drillStdout = drill.stdout;
  });

  it("restores into another database: the same CAs, table for table", async () => {
    const envQ = { HSM_CA_DATA_DIR: path.join(root, "q"), DATABASE_URL: target.url, ...profiles };
    const restore = await cli(["restore", archive], withPassphrase(envQ));
    expect(restore.code, restore.stderr).toBe(0);
    expect(restore.stdout).toMatch(/into the PostgreSQL database/);
    const status = await cli(["status"], envQ);
    expect(status.code, status.stderr).toBe(0);
    // The same CAs: the key labels the drill checked and the fingerprints the backup recorded.
    const labels = drillLines(drillStdout).map((l) => / key (\S+) /.exec(l)![1]!);
    expect(labels).toHaveLength(2);
    for (const label of labels) expect(status.stdout).toContain(`key          ${label}`);
    const manifest = await decryptArchive(fs.readFileSync(archive), PASSPHRASE);
    const cas = manifest.database.tables.tables.cas!;
    const fingerprints = cas.rows.map((row) => row[cas.columns.indexOf("fingerprint_sha256")]);
    expect([...status.stdout.matchAll(/sha256\s+([0-9a-f]{64})/g)].map((m) => m[1])).toEqual(fingerprints);
    const store = await openStore({ databaseUrl: target.url, dataDir: envQ.HSM_CA_DATA_DIR });
    try {
      expect(await exportTables(store.db)).toEqual(manifest.database.tables);
    } finally {
      await store.close();
    }    const verify = await cli(["audit", "verify"], envQ);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  });

  it("with another PKCS#11 module, carries what HSM_CA_BACKUP_HOOK writes, and says loudly when there is no hook", async () => {
    // The same SoftHSM2 token, addressed as any PKCS#11 module is; the hook copies its token directory.
    const hook = path.join(root, "hsm-hook.sh");
    const hookLog = path.join(root, "hsm-hook.log");
    fs.writeFileSync(hook, `#!/bin/sh\nset -e\necho "$1 $2 \${HSM_CA_BACKUP_PASSPHRASE_FILE:-no-passphrase}" >> ${hookLog}\ncp -r ${dataP}/hsm/tokens "$2/tokens"\n`, { mode: 0o700 });
    const external = {
      ...envP,
      HSM_CA_PKCS11_MODULE: "/usr/lib/softhsm/libsofthsm2.so",
      SOFTHSM2_CONF: path.join(dataP, "hsm/softhsm2.conf"),
      HSM_CA_PIN_FILE: path.join(dataP, "hsm/user.pin"),
    };
    const bare = await cli(["backup", path.join(root, "nohook.hsmca")], withPassphrase(external));
    expect(bare.code, bare.stderr).toBe(0);
    expect(bare.stdout).toMatch(/and NO HSM part\./);
    expect(bare.stderr).toMatch(/^WARNING: this backup holds only the database, NOT the CA keys: HSM_CA_PKCS11_MODULE is set and HSM_CA_BACKUP_HOOK is not; back up the SoftHSM2 token directory \(directories.tokendir in SOFTHSM2_CONF\) from HSM_CA_BACKUP_HOOK\.$/m);

    const archive = path.join(root, "hook.hsmca");
    const withHook = await cli(["backup", archive], withPassphrase({ ...external, HSM_CA_BACKUP_HOOK: hook }));
    expect(withHook.code, withHook.stderr).toBe(0);
    expect(withHook.stdout).toMatch(/and \d+ files from HSM_CA_BACKUP_HOOK\./);
    // Run as `<hook> backup <dir>`, without the passphrase in its environment.
    expect(fs.readFileSync(hookLog, "utf8").trim()).toMatch(/^backup \/\S+ no-passphrase$/);
    const manifest = await decryptArchive(fs.readFileSync(archive), PASSPHRASE);
    expect(manifest.hsm.kind === "hook" && manifest.hsm.files.some((f) => f.path.startsWith("tokens/"))).toBe(true);
  });
});

it("never printed the passphrase or a PIN, and removed every drill's scratch directory", () => {
  expect(outputs.length).toBeGreaterThan(15);
  expect(secrets.size).toBe(7); // the passphrase and three tokens' two PINs each
  for (const o of outputs) for (const s of secrets) expect(o.stdout + o.stderr).not.toContain(s);
  expect(scratchDirs()).toEqual([]);
});

function scratchDirs(): string[] {
  return fs.readdirSync(drillTmp).filter((f) => f.startsWith("hsm-ca-drill-")).sort();
}

function listFiles(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true }).map(String).sort();
}
