import { execFile, execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import { Hsm } from "../src/hsm/hsm.ts";
import { CA_KEY_ALGORITHMS, KEY_ALGORITHM_SPECS } from "../src/hsm/key-algorithms.ts";
import { MODULE_INIT_OPTIONS } from "../src/hsm/module.ts";
import { REPO } from "./helpers/cli.ts";
import { tempDir } from "./helpers/openssl.ts";

/** The HSM layer against a real SoftHSM2 token in a fresh directory. */
const dataDir = tempDir("hsmca-hsm-");
// A queue long enough for the 400 concurrent signatures below (the default bound is 256).
const config = loadConfig({ HSM_CA_DATA_DIR: dataDir, HSM_CA_HSM_SESSIONS: "2", HSM_CA_HSM_QUEUE_LIMIT: "1000" });
let hsm: Hsm;

beforeAll(() => {
  hsm = Hsm.open(config.hsm, dataDir);
});
afterAll(() => {
  hsm?.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

const pin = () => fs.readFileSync(path.join(dataDir, "hsm/user.pin"), "utf8").trim();

function pkcs11Tool(args: string[]): string {
  return execFileSync(
    "pkcs11-tool",
    ["--module", config.hsm.module, "--token-label", config.hsm.tokenLabel, "--login", "--pin", pin(), ...args],
    { encoding: "utf8", env: { ...process.env, SOFTHSM2_CONF: path.join(dataDir, "hsm/softhsm2.conf") } },
  );
}

describe("embedded SoftHSM2 token", () => {
  it("is created on first open with generated PINs readable only by the owner", () => {
    expect(hsm.pinsGenerated).toBe(true);
    for (const f of ["user.pin", "so.pin", "softhsm2.conf"]) {
      expect(fs.statSync(path.join(dataDir, "hsm", f)).mode & 0o777).toBe(0o600);
    }
    expect(pin().length).toBeGreaterThanOrEqual(20);
    expect(hsm.status.health()).toEqual({ ok: true });
  });

  it("is found again by label, keeping its PINs, when opened again", () => {
    const before = pin();
    const again = Hsm.open(config.hsm, dataDir);
    try {
      expect(again.pinsGenerated).toBe(false);
      expect(pin()).toBe(before);
    } finally {
      // Both handles share the process's module: closing one must not break the other.
      again.close();
    }
  });
});

describe("CA keys", () => {
  for (const algorithm of CA_KEY_ALGORITHMS) {
    it(`generates ${algorithm} on the token as sensitive, never-extractable, and signs through WebCrypto`, async () => {
      const label = `test/${algorithm}`;
      const key = await hsm.generateKey(label, algorithm);
      expect(key.id).toMatch(/^[0-9a-f]{16,}$/);
      expect(hsm.keyId(label)).toBe(key.id);
      expect(hsm.status.provenance(label)).toEqual({
        token: true,
        private: true,
        local: true,
        sensitive: true,
        alwaysSensitive: true,
        extractable: false,
        neverExtractable: true,
        sign: true,
      });
      // A signature made in the HSM verifies in software with the exported public key.
      const spec = KEY_ALGORITHM_SPECS[algorithm];
      const data = new TextEncoder().encode(`to be signed by ${algorithm}`);
      const signature = await hsm.withSigningKey(label, algorithm, (k, crypto) => crypto.subtle.sign(spec.signParams, k, data));
      const publicKey = await globalThis.crypto.subtle.importKey("spki", key.spki, spec.keyParams, true, ["verify"]);
      expect(await globalThis.crypto.subtle.verify(spec.signParams, publicKey, signature, data)).toBe(true);
      // The key lent for signing says it cannot be exported (the token's own attributes say so above).
      expect(await hsm.withSigningKey(label, algorithm, async (k) => [k.type, k.extractable, k.usages])).toEqual(["private", false, ["sign"]]);
    }, 120_000);
  }

  it("signs on worker threads that keep a process alive only while a signature is on its way", async () => {
    // A process of its own (its own token directory): it signs once and must exit by itself, having printed the signature.
    const own = tempDir("hsmca-sign-once-");
    try {
      const out = await new Promise<string>((resolve, reject) => {
        execFile(process.execPath, ["--import", "tsx", path.join(REPO, "test/fixtures/sign-once/main.ts"), own], { cwd: REPO, timeout: 60_000 }, (err, stdout, stderr) =>
          err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stdout),
        );
      });
      const { signature, spki } = JSON.parse(out) as { signature: string; spki: string };
      const spec = KEY_ALGORITHM_SPECS["ecdsa-p256"];
      const publicKey = await globalThis.crypto.subtle.importKey("spki", Buffer.from(spki, "hex"), spec.keyParams, true, ["verify"]);
      expect(await globalThis.crypto.subtle.verify(spec.signParams, publicKey, Buffer.from(signature, "hex"), new TextEncoder().encode("sign once"))).toBe(true);
    } finally {
      fs.rmSync(own, { recursive: true, force: true });
    }
  }, 90_000);

  it("never creates a second key under an existing label", async () => {
    await expect(hsm.generateKey("test/ecdsa-p256", "ecdsa-p256")).rejects.toThrow(/already exists/);
    expect(pkcs11Tool(["--list-objects", "--type", "privkey"]).match(/label:\s+test\/ecdsa-p256\n/g)).toHaveLength(1);
  });

  it("shows every CA private key as sensitive and never extractable in pkcs11-tool", () => {
    const out = pkcs11Tool(["--list-objects", "--type", "privkey"]);
    const objects = out.split(/^Private Key Object/m).slice(1);
    expect(objects).toHaveLength(CA_KEY_ALGORITHMS.length);
    for (const o of objects) {
      expect(o).toMatch(/Access:\s+sensitive, always sensitive, never extractable, local/);
    }
  });
});

describe("session pool", () => {
  it("initialises the module for multi-threaded use (CKF_OS_LOCKING_OK)", () => {
    expect(MODULE_INIT_OPTIONS.flags).toBe(0x2);
  });

  it("runs 400 concurrent signatures on 2 sessions without CKR_OPERATION_ACTIVE", async () => {
    const spec = KEY_ALGORITHM_SPECS["ecdsa-p256"];
    const data = new Uint8Array(32);
    let maxWaiting = 0;
    const sigs = await Promise.all(
      Array.from({ length: 400 }, () =>
        hsm.withSigningKey("test/ecdsa-p256", "ecdsa-p256", async (k, crypto) => {
          maxWaiting = Math.max(maxWaiting, hsm.status.poolStats.waiting);
          return crypto.subtle.sign(spec.signParams, k, data);
        }),
      ),
    );
    expect(sigs).toHaveLength(400);
    expect(maxWaiting).toBeGreaterThan(0); // the pool queued callers instead of sharing a session
    expect(hsm.status.poolStats).toEqual({ size: 2, inUse: 0, waiting: 0 });
  });
});

describe("refusals", () => {
  // A wrong PIN is tested in cli.test.ts, in a fresh process: PKCS#11 login state is
  // per process, so a second login here would ride on this file's session.

  it("names the token label it could not find", () => {
    const cfg = loadConfig({ HSM_CA_DATA_DIR: dataDir, HSM_CA_PKCS11_MODULE: config.hsm.module, HSM_CA_TOKEN_LABEL: "absent", HSM_CA_PIN_FILE: path.join(dataDir, "hsm/user.pin") });
    expect(() => Hsm.open(cfg.hsm, dataDir)).toThrow(/no token labelled "absent"/);
  });

  it("refuses a PKCS#11 module that cannot be loaded", () => {
    const cfg = loadConfig({ HSM_CA_DATA_DIR: dataDir, HSM_CA_PKCS11_MODULE: "/nonexistent/libpkcs11.so", HSM_CA_PIN: "x" });
    expect(() => Hsm.open(cfg.hsm, dataDir)).toThrow(/cannot load the PKCS#11 module \/nonexistent\/libpkcs11.so/);
  });
});
