import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import { Hsm } from "../src/hsm/hsm.ts";
import { createLogger } from "../src/logger.ts";
import { startServiceWithCli } from "../src/serve.ts";
import type { Service } from "../src/service.ts";
import { REPO, runCliInProcess } from "./helpers/cli.ts";
import { apiClient } from "./helpers/https.ts";
import { makeCsr, openssl, tempDir, verify } from "./helpers/openssl.ts";
import { createTestDatabase } from "./helpers/postgres.ts";
import { verifyWithAll } from "./helpers/relying-parties.ts";

/**
 * Keys made elsewhere (here by pkcs11-tool, as a vendor's ceremony would)
 * adopted as CA keys. One token (one SoftHSM2 configuration per process)
 * holds every vendor key; each hierarchy is its own PostgreSQL database.
 */
const dataDir = tempDir("hsmca-adopt-");
const MODULE = "/usr/lib/softhsm/libsofthsm2.so";
const databases: Array<Awaited<ReturnType<typeof createTestDatabase>>> = [];
let service: Service | undefined;

const pin = () => fs.readFileSync(path.join(dataDir, "hsm/user.pin"), "utf8").trim();

function pkcs11Tool(args: string[]): string {
  return execFileSync("pkcs11-tool", ["--module", MODULE, "--token-label", "hsm-ca", "--login", "--pin", pin(), ...args], {
    encoding: "utf8",
    env: { ...process.env, SOFTHSM2_CONF: path.join(dataDir, "hsm/softhsm2.conf") },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

const keypair = (keyType: string, label: string | undefined, id: string, ...flags: string[]) =>
  pkcs11Tool(["--keypairgen", "--key-type", keyType, ...(label ? ["--label", label] : []), "--id", id, "--usage-sign", ...flags]);

/** The public key pkcs11-tool reads for a label, as PEM (what the adopted key's certificate must carry). */
function tokenPublicKeyPem(label: string): string {
  const der = path.join(dataDir, `${label}.pub.der`);
  pkcs11Tool(["--read-object", "--type", "pubkey", "--label", label, "-o", der]);
  return openssl(["pkey", "-pubin", "-inform", "DER", "-in", der]);
}

/** The EC point of the public key object with a label, as pkcs11-tool lists it (its --read-object fails on P-384 in OpenSC 0.23). */
function tokenEcPointHex(label: string): string {
  const block = pkcs11Tool(["--list-objects", "--type", "pubkey"])
    .split(/^(?=Public Key Object)/m)
    .find((b) => new RegExp(`label:\\s+${label}\n`).test(b))!;
  const listed = /EC_POINT:\s+([0-9a-f]+)/.exec(block)![1]!;
  return listed.replace(/^04(?:[0-7][0-9a-f]|81[0-9a-f]{2})/, ""); // the DER OCTET STRING's tag and length
}

/** The EC point in a certificate's SubjectPublicKeyInfo, hex. */
function certificateEcPointHex(pem: string, pointBytes: number): string {
  const spki = crypto.createPublicKey(pem).export({ type: "spki", format: "der" });
  return spki.subarray(spki.length - pointBytes).toString("hex");
}

const privateKeyCount = () => (pkcs11Tool(["--list-objects", "--type", "privkey"]).match(/^Private Key Object/gm) ?? []).length;

/** A fresh database for one hierarchy, the CLI environment for it, and a client to look inside. */
async function hierarchy() {
  const db = await createTestDatabase();
  databases.push(db);
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  return {
    url: db.url,
    env: { HSM_CA_DATA_DIR: dataDir, DATABASE_URL: db.url },
    sql,
    /** Rows in a table; 0 also when the table does not exist yet (nothing was ever stored). */
    async count(table: string): Promise<number> {
      try {
        return Number((await sql.unsafe(`select count(*)::int as n from ${table}`))[0]!.n);
      } catch {
        return 0;
      }
    },
  };
}

const cli = (args: string[], env: Record<string, string>) => runCliInProcess(args, env);

beforeAll(() => {
  // The embedded token and its PINs, as hsm-ca makes them; then the vendor's keys on it.
  Hsm.open(loadConfig({ HSM_CA_DATA_DIR: dataDir }).hsm, dataDir).close();
  keypair("EC:prime256v1", "vendor-int", "0a0b", "--sensitive");
  keypair("EC:secp384r1", "vendor-root", "0c0c", "--sensitive");
  keypair("rsa:2048", "vendor-rsa", "0d", "--sensitive");
  keypair("EC:prime256v1", "vendor-extractable", "0e", "--sensitive", "--extractable");
  // Imported from software (not CKA_LOCAL, not always sensitive), its public key written beside it.
  const keyDir = tempDir("hsmca-adopt-key-");
  fs.writeFileSync(path.join(keyDir, "k.pem"), openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]));
  openssl(["pkey", "-in", path.join(keyDir, "k.pem"), "-pubout", "-outform", "DER", "-out", path.join(keyDir, "pub.der")]);
  pkcs11Tool(["--write-object", path.join(keyDir, "k.pem"), "--type", "privkey", "--label", "vendor-imported", "--id", "0f", "--usage-sign", "--sensitive", "--private"]);
  pkcs11Tool(["--write-object", path.join(keyDir, "pub.der"), "--type", "pubkey", "--label", "vendor-imported", "--id", "0f"]);
  fs.rmSync(keyDir, { recursive: true, force: true });
  keypair("EC:prime256v1", "dup-a", "1111");
  keypair("EC:prime256v1", "dup-b", "1111");
  keypair("EC:prime256v1", undefined, "2222");
  keypair("EC:secp521r1", "vendor-p521", "33");
  // Key pairs whose public key object was deleted: RSA keeps its public half in the private key, EC does not.
  keypair("rsa:2048", "vendor-rsa-bare", "44", "--sensitive");
  pkcs11Tool(["--delete-object", "--type", "pubkey", "--id", "44"]);
  keypair("EC:prime256v1", "vendor-ec-bare", "55", "--sensitive");
  pkcs11Tool(["--delete-object", "--type", "pubkey", "--id", "55"]);
}, 120_000);

afterAll(async () => {
  await service?.close();
  for (const db of databases) await db.drop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe("a vendor's key as the issuing intermediate", () => {
  let h: Awaited<ReturnType<typeof hierarchy>>;
  beforeAll(async () => {
    h = await hierarchy();
  });

  it("init --intermediate-key-label adopts it and the transcript says so, with what the token reports", async () => {
    const before = privateKeyCount();
    const r = await cli(["init", "--intermediate-key-label", "vendor-int"], h.env);
    expect(r.code, r.stderr).toBe(0);
    const intermediate = r.stdout.slice(r.stdout.indexOf("INTERMEDIATE CA"));
    expect(intermediate).toMatch(/key label\s+vendor-int\n/);
    expect(intermediate).toMatch(/key id \(CKA_ID\)\s+0a0b\n/);
    expect(intermediate).toMatch(/key algorithm\s+ecdsa-p256/);
    expect(intermediate).toMatch(/key origin\s+adopted/);
    expect(intermediate).toMatch(/key provenance\s+local=true sensitive=true extractable=false neverExtractable=true alwaysSensitive=true private=true sign=true/);
    expect(intermediate).not.toMatch(/WEAK KEY/);
    expect(r.stdout.slice(0, r.stdout.indexOf("INTERMEDIATE CA"))).toMatch(/ROOT CA[\s\S]*key origin\s+generated/);
    // Only the root key was made; the vendor's key was used as it is.
    expect(privateKeyCount()).toBe(before + 1);

    const [ceremony] = await h.sql`select transcript from ceremonies where kind = 'init'`;
    const entry = (ceremony!.transcript as { created: Array<{ role: string; keyOrigin: string }> }).created.find((e) => e.role === "intermediate");
    expect(entry).toMatchObject({ keyOrigin: "adopted", keyLabel: "vendor-int", provenance: { local: true, extractable: false } });
    const [audit] = await h.sql`select details from audit_log where kind = 'admin.init'`;
    expect((audit!.details as { created: unknown[] }).created).toContainEqual(expect.objectContaining({ role: "intermediate", key_label: "vendor-int", key_origin: "adopted" }));
  });

  it("the service issues with the adopted key: the leaf's issuer key is the vendor key's public key", async () => {
    service = await startServiceWithCli(
      loadConfig({ ...h.env, HSM_CA_PROFILES_DIR: path.join(REPO, "profiles"), HSM_CA_HTTPS_HOST: "127.0.0.1", HSM_CA_HTTPS_PORT: "0", HSM_CA_HTTP_HOST: "127.0.0.1", HSM_CA_HTTP_PORT: "0" }),
      createLogger("silent"),
    );
    const rootPem = await (await fetch(`${service.httpUrl}/ca/root.pem`)).text();
    const created = await cli(["token", "create", "--role", "admin"], h.env);
    expect(created.code, created.stderr).toBe(0);
    const token = created.stdout.trim();
    const api = apiClient(service.httpsUrl, rootPem);
    const res = await api("POST", "/api/v1/certificates", { token, json: { csr: makeCsr({ san: "DNS:adopted.example.test" }).csr, profile: "tls-server" } });
    expect(res.status, res.text).toBe(201);
    const verdicts = await verifyWithAll({ roots: [rootPem], intermediates: [res.body.chain], leaf: res.body.certificate, purpose: "serverAuth" });
    expect(verdicts).toMatchObject({ openssl: { ok: true }, go: { ok: true }, gnutls: { ok: true } });

    const vendorKey = tokenPublicKeyPem("vendor-int");
    const issuerPem = res.body.chain.slice(0, res.body.chain.indexOf("-----END CERTIFICATE-----") + 26);
    expect(openssl(["x509", "-noout", "-pubkey"], issuerPem)).toBe(vendorKey);
    expect(new crypto.X509Certificate(res.body.certificate).verify(crypto.createPublicKey(vendorKey))).toBe(true);

    const cas = await api("GET", "/api/v1/cas", { token });
    expect(cas.status).toBe(200);
    const byRole = Object.fromEntries(cas.body.items.map((c: { role: string }) => [c.role, c]));
    expect(byRole.intermediate).toMatchObject({ keyOrigin: "adopted", keyLabel: "vendor-int", keyId: "0a0b", keyProvenance: { local: true, sensitive: true, extractable: false, private: true, sign: true } });
    expect(byRole.root).toMatchObject({ keyOrigin: "generated" });

    const status = await cli(["status"], h.env);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/key\s+vendor-int\s+id 0a0b\s+ecdsa-p256\s+adopted/);
  });

  it("the same key is not adopted twice", async () => {
    const r = await cli(["ceremony", "sign-intermediate", "--key-label", "vendor-int"], h.env);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/"vendor-int" .* is already the key of the active intermediate CA/);
    expect(await h.count("cas")).toBe(2);
  });

  it("init again with the same key creates nothing; with another key it says the intermediate exists", async () => {
    const again = await cli(["init", "--intermediate-key-label", "vendor-int"], h.env);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/already exists; nothing was created/);
    const other = await cli(["init", "--intermediate-key-label", "vendor-rsa"], h.env);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/an active intermediate CA exists already .*applies only when init creates the intermediate/);
  });
});

describe("vendor keys as root and intermediate, by CKA_ID and by label", () => {
  it("refuses an --intermediate-algorithm the key is not, and stores nothing", async () => {
    const h = await hierarchy();
    const r = await cli(["init", "--intermediate-key-label", "vendor-rsa", "--intermediate-algorithm", "ecdsa-p256"], h.env);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(/^hsm-ca init: the key "vendor-rsa" \(CKA_ID 0d\) on token "hsm-ca" is rsa-2048, not the ecdsa-p256 asked for/);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(await h.count("cas")).toBe(0);
  });

  it("init --root-key-id adopts the root by its CKA_ID (P-384), the intermediate is RSA by label; a leaf chains through both", async () => {
    const h = await hierarchy();
    const before = privateKeyCount();
    const r = await cli(["init", "--root-key-id", "0C:0C", "--intermediate-key-label", "vendor-rsa", "--intermediate-algorithm", "rsa-2048"], h.env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.match(/key origin\s+adopted/g)).toHaveLength(2);
    expect(r.stdout).toMatch(/ROOT CA[\s\S]*key label\s+vendor-root\n[\s\S]*key algorithm\s+ecdsa-p384/);
    expect(r.stdout).toMatch(/INTERMEDIATE CA[\s\S]*key label\s+vendor-rsa\n[\s\S]*key algorithm\s+rsa-2048/);
    expect(privateKeyCount()).toBe(before);

    const rows = await h.sql`select role, key_label, key_id, key_origin, key_algorithm, certificate_pem from cas order by id`;
    expect(rows.map((c) => [c.role, c.key_label, c.key_id, c.key_origin, c.key_algorithm])).toEqual([
      ["root", "vendor-root", "0c0c", "adopted", "ecdsa-p384"],
      ["intermediate", "vendor-rsa", "0d", "adopted", "rsa-2048"],
    ]);
    const [root, intermediate] = rows.map((c) => c.certificate_pem as string);
    expect(certificateEcPointHex(root!, 97)).toBe(tokenEcPointHex("vendor-root"));
    expect(openssl(["x509", "-noout", "-pubkey"], intermediate!)).toBe(tokenPublicKeyPem("vendor-rsa"));
    expect(verify(root!, root!, intermediate!).ok).toBe(true);
  });

  it("ceremony create-root --key-label adopts a root", async () => {
    const h = await hierarchy();
    const r = await cli(["ceremony", "create-root", "--key-label", "vendor-root"], h.env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Key ceremony: create-root[\s\S]*ROOT CA[\s\S]*key label\s+vendor-root\n[\s\S]*key origin\s+adopted/);
    const [audit] = await h.sql`select details from audit_log where kind = 'admin.ceremony'`;
    expect((audit!.details as { created: unknown[] }).created).toContainEqual(expect.objectContaining({ role: "root", key_label: "vendor-root", key_origin: "adopted" }));
  });

  it("an RSA key without a public key object: its public half comes from the private key, and the root certificate verifies", async () => {
    const h = await hierarchy();
    const r = await cli(["ceremony", "create-root", "--key-label", "vendor-rsa-bare"], h.env);
    expect(r.code, r.stderr).toBe(0);
    const [row] = await h.sql`select certificate_pem, key_algorithm from cas`;
    expect(row!.key_algorithm).toBe("rsa-2048");
    // Self-signed by the token's private key: the certificate's public key is that key's.
    expect(verify(row!.certificate_pem, row!.certificate_pem, row!.certificate_pem).ok).toBe(true);
  });
});

describe("keys that are not adopted, and --allow-weak-key", () => {
  let h: Awaited<ReturnType<typeof hierarchy>>;
  beforeAll(async () => {
    h = await hierarchy();
  });

  const refused = async (args: string[], message: RegExp, code = 1) => {
    const before = privateKeyCount();
    const r = await cli(args, h.env);
    expect(r.code, r.stdout + r.stderr).toBe(code);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe("");
    // Nothing stored, and no root key made for a hierarchy that was not created.
    expect(await h.count("cas")).toBe(0);
    expect(await h.count("ceremonies")).toBe(0);
    expect(privateKeyCount()).toBe(before);
  };

  it("an extractable key is refused", () =>
    refused(["init", "--intermediate-key-label", "vendor-extractable"], /the key "vendor-extractable" \(CKA_ID 0e\) on token "hsm-ca" is weak \(extractable\): refused; --allow-weak-key adopts it anyway/));

  it("an imported key (not local: it existed outside the HSM) is refused", () =>
    refused(["init", "--intermediate-key-id", "0f"], /"vendor-imported" .* is weak \(not always sensitive; was extractable once\): refused/));

  it("a label that is on no key", () => refused(["init", "--intermediate-key-label", "no-such-key"], /no private key labelled "no-such-key" on token "hsm-ca"/));

  it("a CKA_ID two keys have", () => refused(["init", "--root-key-id", "1111"], /2 private keys have CKA_ID 1111 on token "hsm-ca" \(labels ("dup-a", "dup-b"|"dup-b", "dup-a")\): name the one to adopt by its label/));

  it("a key with no label, with how to label it", () =>
    refused(["init", "--root-key-id", "2222"], /the private key with CKA_ID 2222 has no label.*p11tool --login --set-label=NAME 'pkcs11:token=hsm-ca;id=%22%22;type=private'/));

  it("a label and a CKA_ID that are not one key's", () => refused(["init", "--root-key-label", "vendor-root", "--root-key-id", "0d"], /the private key labelled "vendor-root" has CKA_ID 0c0c, not 0d/));

  it("a curve hsm-ca does not sign with", () => refused(["init", "--root-key-label", "vendor-p521"], /"vendor-p521" is on an EC curve hsm-ca does not sign with .*EC P-256, EC P-384, RSA 2048, 3072 or 4096/));

  it("an EC key without a public key object, with how to write one", () =>
    refused(["init", "--root-key-label", "vendor-ec-bare"], /the key "vendor-ec-bare" has no public key object with CKA_ID 55.*pkcs11-tool --write-object pub.der --type pubkey --id 55/));

  it("bad key options are a wrong command line (exit 2)", async () => {
    await refused(["init", "--root-key-id", "xyz"], /--root-key-id must be the key's CKA_ID in hex/, 2);
    await refused(["init", "--allow-weak-key"], /--allow-weak-key applies to a key adopted from the token/, 2);
  });

  it("--allow-weak-key adopts an extractable key and records what was weak in the transcript and the audit log", async () => {
    const r = await cli(["init", "--intermediate-key-label", "vendor-extractable", "--allow-weak-key"], h.env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/INTERMEDIATE CA[\s\S]*key origin\s+adopted[\s\S]*extractable=true[\s\S]*WEAK KEY accepted\s+extractable \(CKA_EXTRACTABLE=true: it can be wrapped off the token\) \(--allow-weak-key\)/);
    const [ceremony] = await h.sql`select transcript from ceremonies where kind = 'init'`;
    const entry = (ceremony!.transcript as { created: Array<{ role: string }> }).created.find((e) => e.role === "intermediate");
    expect(entry).toMatchObject({ keyOrigin: "adopted", weakKeyAccepted: [expect.stringMatching(/^extractable/)] });
    const [audit] = await h.sql`select details from audit_log where kind = 'admin.init'`;
    expect((audit!.details as { created: unknown[] }).created).toContainEqual(
      expect.objectContaining({ role: "intermediate", key_origin: "adopted", weak_key_accepted: [expect.stringMatching(/^extractable/)], key_provenance: expect.objectContaining({ extractable: true }) }),
    );
  });

  it("--allow-weak-key on an imported key records that it is not local and was readable once", async () => {
    const h2 = await hierarchy();
    const r = await cli(["ceremony", "create-root", "--key-id", "0f", "--allow-weak-key"], h2.env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/key label\s+vendor-imported\n/);
    expect(r.stdout).toMatch(/key provenance\s+local=false sensitive=true extractable=false neverExtractable=false alwaysSensitive=false/);
    expect(r.stdout).toMatch(/WEAK KEY accepted\s+not always sensitive .*; was extractable once/);
  });
});
