import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listCeremonies } from "../src/store/ceremonies.ts";
import { openStore } from "../src/store/database.ts";
import { runCli, runCliInProcess } from "./helpers/cli.ts";
import { tempDir } from "./helpers/openssl.ts";

/**
 * The hsm-ca commands as an admin runs them, with no service running
 * (embedded PGlite). The first init, a few refusals, a wrong PIN (the module's
 * SOFTHSM2_CONF is the process's) and serve run the real executable; the
 * other commands run its main() in this process (helpers/cli.ts).
 */
const dataDir = tempDir("hsmca-cli-");
const env = { HSM_CA_DATA_DIR: dataDir };
const pin = () => fs.readFileSync(path.join(dataDir, "hsm/user.pin"), "utf8").trim();

afterAll(() => fs.rmSync(dataDir, { recursive: true, force: true }));

describe("hsm-ca init", () => {
  let first: Awaited<ReturnType<typeof runCli>>;
  beforeAll(async () => {
    first = await runCli(
      [
        "init",
        "--root-subject", "CN=Example Root,O=Example",
        "--root-algorithm", "rsa-2048",
        "--root-validity-days", "800",
        "--intermediate-subject", "CN=Example Issuing,O=Example",
        "--intermediate-algorithm", "ecdsa-p384",
        "--intermediate-validity-days", "30",
      ],
      env,
      120_000,
    );
  });

  it("creates the hierarchy with the options given and prints a ceremony transcript", () => {
    expect(first.stderr).toBe("");
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/ROOT CA\s+CN=Example Root, O=Example/);
    expect(first.stdout).toMatch(/INTERMEDIATE CA\s+CN=Example Issuing, O=Example/);
    expect(first.stdout).toMatch(/key algorithm\s+rsa-2048/);
    expect(first.stdout).toMatch(/key algorithm\s+ecdsa-p384/);
    expect(first.stdout.match(/key id \(CKA_ID\)\s+[0-9a-f]{16,}/g)).toHaveLength(2);
    expect(first.stdout.match(/public key SHA-256\s+([0-9A-F]{2}:){31}[0-9A-F]{2}/g)).toHaveLength(2);
    expect(first.stdout.match(/certificate SHA-256\s+([0-9A-F]{2}:){31}[0-9A-F]{2}/g)).toHaveLength(2);
    expect(first.stdout).toMatch(/sensitive=true extractable=false neverExtractable=true/);
    expect(first.stdout).not.toContain(pin());
  });

  it("prints fingerprints that match the stored certificates and reports them in status", async () => {
    const status = await runCliInProcess(["status"], env);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/ROOT CA \(active\)\s+CN=Example Root/);
    const fingerprints = [...status.stdout.matchAll(/sha256\s+([0-9a-f]{64})/g)].map((m) => m[1]!.toUpperCase().match(/../g)!.join(":"));
    expect(fingerprints).toHaveLength(2);
    for (const fp of fingerprints) expect(first.stdout).toContain(`certificate SHA-256  ${fp}`);
    // The root lives 800 days, the intermediate 30.
    const valid = [...status.stdout.matchAll(/valid\s+(\S+) \.\. (\S+)/g)].map((m) => (Date.parse(m[2]!) - Date.now()) / 86_400_000);
    expect(Math.round(valid[0]!)).toBe(800);
    expect(Math.round(valid[1]!)).toBe(30);
  });

  it("is idempotent: a second run creates nothing and keeps the keys", async () => {
    const again = await runCliInProcess(["init", "--root-algorithm", "ecdsa-p256"], env);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/already exists; nothing was created/);
    const keys = listPrivateKeys();
    expect(keys).toHaveLength(2);
    for (const k of keys) expect(k).toMatch(/Access:\s+sensitive, always sensitive, never extractable, local/);
  });

  it("stored the transcript in the database, naming the keys that are on the token", async () => {
    const store = await openStore({ dataDir });
    try {
      const ceremonies = await listCeremonies(store.db);
      expect(ceremonies).toHaveLength(1);
      const transcript = ceremonies[0]!.transcript as { created: Array<{ keyId: string; certificateSha256: string }> };
      expect(transcript.created).toHaveLength(2);
      for (const entry of transcript.created) {
        expect(first.stdout).toContain(entry.keyId);
        expect(listPrivateKeys().join("")).toContain(`ID:         ${entry.keyId}`);
      }
    } finally {
      await store.close();
    }
  });
});

describe("hsm-ca token create", () => {
  it("prints the token once on stdout and what it is on stderr", async () => {
    const r = await runCliInProcess(["token", "create", "--role", "issuer", "--profile", "tls-server", "--profile", "spiffe-svid"], env);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^hsmca_[0-9a-f]{12}_[A-Za-z0-9_-]{32}$/);
    expect(r.stderr).toMatch(/issuer token [0-9a-f]{12} for profiles tls-server, spiffe-svid/);
    // Only its hash is kept: the secret is not in the database files.
    const secret = r.stdout.trim().slice("hsmca_".length + 13); // after "hsmca_<12-hex id>_" (base64url may hold "_" itself)
    expect(grepDir(path.join(dataDir, "pglite"), secret)).toBe(false);
  });

  // Exit 2: the command line is wrong; 1: the command could not be done.
  const refusals: Array<[string, string[], RegExp, number]> = [
    ["an issuer token without a profile", ["token", "create", "--role", "issuer"], /needs at least one --profile/, 1],
    ["an unknown role", ["token", "create", "--role", "wizard"], /--role must be one of admin, issuer, auditor/, 2],
    ["an unknown profile", ["token", "create", "--role", "issuer", "--profile", "nope"], /no profile "nope"/, 2],
    ["an unknown option", ["token", "create", "--role", "admin", "--colour", "red"], /Unknown option '--colour'/, 1],
    ["an unknown command", ["frobnicate"], /unknown command "frobnicate"/, 2],
    ["a bad algorithm", ["init", "--root-algorithm", "dsa-1024"], /--root-algorithm must be one of ecdsa-p256/, 2],
  ];
  for (const [what, args, message, code] of refusals) {
    it(`refuses ${what} with one line and exit ${code}`, async () => {
      const r = await runCliInProcess(args, env);
      expect(r.code).toBe(code);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stdout).toBe("");
    });
  }

  it("the executable itself: one line on stderr, nothing on stdout, the exit code", async () => {
    for (const [, args, message, code] of refusals.filter(([what]) => what === "an unknown command" || what === "an unknown option")) {
      const r = await runCli(args, env);
      expect(r.code).toBe(code);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stdout).toBe("");
    }
  });
});

describe("secrets and configuration errors", () => {
  it("fails with a wrong PIN without printing it or the real one", async () => {
    const wrong = "wrong-pin-0815";
    // The same token, addressed as any PKCS#11 module is: library path, label, PIN.
    const r = await runCli(["status"], {
      ...env,
      HSM_CA_PKCS11_MODULE: "/usr/lib/softhsm/libsofthsm2.so",
      SOFTHSM2_CONF: path.join(dataDir, "hsm/softhsm2.conf"),
      HSM_CA_PIN: wrong,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/HSM login failed: CKR_PIN_INCORRECT/);
    expect(r.stderr + r.stdout).not.toContain(wrong);
    expect(r.stderr + r.stdout).not.toContain(pin());
  });

  it("refuses to serve with a broken profile, naming the file and field", async () => {
    const profiles = tempDir("hsmca-profiles-");
    fs.copyFileSync(path.resolve("profiles/tls-server.yaml"), path.join(profiles, "tls-server.yaml"));
    fs.writeFileSync(path.join(profiles, "broken.yaml"), fs.readFileSync("profiles/tls-client.yaml", "utf8").replace("name: tls-client", "name: broken").replace("max: 30d", "max: forever"));
    const r = await runCli(["serve"], { ...env, HSM_CA_PROFILES_DIR: profiles });
    fs.rmSync(profiles, { recursive: true, force: true });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(/^hsm-ca serve: broken\.yaml: lifetime\.max: expected a duration/);
  });

  it("refuses a PIN setting for the embedded token, whose PIN is generated", async () => {
    const r = await runCliInProcess(["status"], { ...env, HSM_CA_PIN: "1234" });
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toMatch(/^hsm-ca: HSM_CA_PIN and HSM_CA_PIN_FILE apply with HSM_CA_PKCS11_MODULE/);
  });

  it("refuses a bad setting with one line", async () => {
    const r = await runCliInProcess(["status"], { ...env, HSM_CA_HSM_SESSIONS: "lots" });
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toMatch(/^hsm-ca: invalid setting HSM_CA_HSM_SESSIONS/);
  });

  it("refuses a database URL that targets servers hsm-ca cannot write to, with one line and exit 2", async () => {
    const r = await runCliInProcess(["status"], { ...env, DATABASE_URL: "postgres://127.0.0.1:5432,127.0.0.1:5433/test?target_session_attrs=standby" });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/target_session_attrs=standby cannot serve hsm-ca, which writes/);
  });
});

/** The token's private keys as pkcs11-tool, the user's view, lists them. */
function listPrivateKeys(): string[] {
  const text = execFileSync(
    "pkcs11-tool",
    ["--module", "/usr/lib/softhsm/libsofthsm2.so", "--token-label", "hsm-ca", "--login", "--pin", pin(), "--list-objects", "--type", "privkey"],
    { encoding: "utf8", env: { ...process.env, SOFTHSM2_CONF: path.join(dataDir, "hsm/softhsm2.conf") } },
  );
  return text.split(/^Private Key Object/m).slice(1);
}

function grepDir(dir: string, needle: string): boolean {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    if (fs.readFileSync(path.join(entry.parentPath, entry.name)).includes(needle)) return true;
  }
  return false;
}
