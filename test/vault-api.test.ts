import { execFile, execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { auditEntriesPage } from "../src/store/audit.ts";
import { certificateBySerial } from "../src/store/certificates.ts";
import { REPO, runCliInProcess } from "./helpers/cli.ts";
import { makeCsr, makeKey, tempDir } from "./helpers/openssl.ts";
import { parsePrometheusText } from "./helpers/prometheus.ts";
import { verifyWithAll } from "./helpers/relying-parties.ts";
import { startTestService, type TestService } from "./helpers/service.ts";
import { waitFor } from "./helpers/wait.ts";

/**
 * The Vault-compatible PKI API (src/vault) driven by real Vault clients,
 * unchanged: Debian's python3-hvac, the npm node-vault client, and a Go
 * program that sends exactly what cert-manager's Vault issuer sends. What
 * they get must be what REST gives: stored, audited with the Vault path
 * and role, counted (source "vault"), scoped to the token, revocable.
 */
const run = promisify(execFile);
// Debian's interpreter: `python3` on PATH may be a pyenv shim without Debian's packages.
const PYTHON = "/usr/bin/python3";

let t: TestService;
let dir: string;
let rootFile: string;
let admin: string;
let issuer: string;
let clientIssuer: string;
let auditor: string;
let approle: { roleId: string; secretId: string; id: string };

const tokenId = (token: string) => /^hsmca_([0-9a-f]{12})_/.exec(token)![1]!;
const hexOf = (vaultSerial: string) => vaultSerial.replace(/:/g, "");
const firstPem = (bundle: string) => /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(bundle)![0];
const vaultUrl = () => t.service.httpsUrl;

function csrFile(name: string, cn: string, san: string, key?: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, makeCsr({ subject: `/CN=${cn}`, san, keyPem: key }).csr);
  return file;
}

/** A Vault request as any HTTP client sends it (for the paths and errors no client library wraps). */
async function vault(method: string, p: string, opts: { token?: string; json?: unknown } = {}) {
  const res = await t.api(method, p, { headers: opts.token ? { "x-vault-token": opts.token } : {}, json: opts.json });
  return res;
}

beforeAll(async () => {
  t = await startTestService("postgres", { HSM_CA_VAULT_ROLES: "web=tls-server,mesh=spiffe-svid", HSM_CA_RATE_LIMIT_PER_TOKEN: "600/m burst 60" });
  dir = tempDir("hsmca-vault-");
  rootFile = path.join(dir, "root.pem");
  fs.writeFileSync(rootFile, t.rootPem);
  admin = await t.token("admin");
  issuer = await t.token("issuer", "tls-server");
  clientIssuer = await t.token("issuer", "tls-client");
  auditor = await t.token("auditor");
  const created = await runCliInProcess(["vault", "approle", "create", "--name", "cert-manager", "--profile", "tls-server", "--ttl", "1h"], t.env);
  expect(created.code, created.stderr).toBe(0);
  const roleId = /role_id\s+(\S+)/.exec(created.stdout)![1]!;
  const secretId = /secret_id\s+(\S+)/.exec(created.stdout)![1]!;
  approle = { roleId, secretId, id: /\(([0-9a-f]{12})\)/.exec(created.stderr)![1]! };
}, 120_000);

afterAll(async () => {
  await t?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe("python3-hvac, unchanged", () => {
  let out: Record<string, any>;

  beforeAll(async () => {
    const env = {
      ...process.env,
      VAULT_ADDR: vaultUrl(),
      VAULT_CACERT: rootFile,
      VAULT_TOKEN: issuer,
      AUDITOR_TOKEN: auditor,
      VAULT_ROLE: "web",
      CSR_FILE: csrFile("hvac.csr", "hvac.example.test", "DNS:hvac.example.test"),
      CSR_CN: "hvac.example.test",
      ROLE_ID: approle.roleId,
      SECRET_ID: approle.secretId,
      OTHER_CSR_FILE: csrFile("approle.csr", "approle.example.test", "DNS:approle.example.test"),
      OTHER_CN: "approle.example.test",
    };
    const { stdout } = await run(PYTHON, [path.join(REPO, "test/fixtures/vault-hvac.py")], { env, timeout: 60_000 });
    out = JSON.parse(stdout);
  }, 90_000);

  it("reads sys/health as an initialized, unsealed Vault", () => {
    expect(out.health).toMatchObject({ initialized: true, sealed: false, standby: false });
  });

  it("reads the issuing CA and the chain up to the root", () => {
    const intermediate = firstPem(t.chainPem);
    expect(out.ca.trim()).toBe(intermediate.trim());
    expect(out.ca_chain).toContain(intermediate.trim());
    expect(out.ca_chain).toContain(t.rootPem.trim());
  });

  it("signs a CSR: Vault's envelope, a colon-hex serial, a chain three relying parties accept, the ttl asked for", async () => {
    const s = out.sign;
    expect(s).toMatchObject({ lease_id: "", renewable: false, lease_duration: 0 });
    expect(s.data.serial_number).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){15}$/);
    expect(s.data.issuing_ca.trim()).toBe(firstPem(t.chainPem).trim());
    const cert = new x509.X509Certificate(s.data.certificate);
    expect(cert.serialNumber.toLowerCase()).toBe(hexOf(s.data.serial_number));
    expect(s.data.expiration).toBe(Math.floor(cert.notAfter.getTime() / 1000));
    expect(cert.notAfter.getTime() - cert.notBefore.getTime()).toBeLessThanOrEqual(2 * 3600_000 + 60_000);
    const verdicts = await verifyWithAll({ roots: [t.rootPem], intermediates: [s.data.issuing_ca], leaf: s.data.certificate, purpose: "serverAuth" });
    expect(verdicts.openssl.ok, verdicts.openssl.detail).toBe(true);
    expect(verdicts.go.ok, verdicts.go.detail).toBe(true);
    expect(verdicts.gnutls.ok, verdicts.gnutls.detail).toBe(true);
  });

  it("stored it before answering, as requested by the token, under the role's profile", async () => {
    const row = await certificateBySerial(t.service.ctx.store.db, hexOf(out.sign.data.serial_number));
    expect(row).toMatchObject({ profile: "tls-server", requestedBy: tokenId(issuer) });
    expect(row!.certificatePem.trim()).toBe(out.sign.data.certificate.trim());
    const rest = await t.api("GET", `/api/v1/certificates/${hexOf(out.sign.data.serial_number)}`, { token: issuer });
    expect(rest.status).toBe(200);
  });

  it("reads the certificate back and lists it (hvac sends LIST)", () => {
    expect(out.read_certificate.data.certificate.trim()).toBe(out.sign.data.certificate.trim());
    expect(out.list.data.keys).toContain(out.sign.data.serial_number);
  });

  it("revokes it: the database says revoked and the CRL at /v1/pki/crl lists it", async () => {
    expect(out.revoke.data.state).toBe("revoked");
    const hex = hexOf(out.sign.data.serial_number);
    expect((await certificateBySerial(t.service.ctx.store.db, hex))!.status).toBe("revoked");
    await waitFor("the revocation in the Vault CRL", async () => {
      const der = await crlDer();
      return execFileSync("openssl", ["crl", "-inform", "DER", "-noout", "-text"], { input: der, encoding: "utf8" }).toUpperCase().includes(hex.toUpperCase());
    });
  });

  it("is refused in Vault's words: issue/<role>, other_sans, an unknown role (400), an auditor or a bad token (403)", () => {
    expect(out.issue_refused.raised).toBe("InvalidRequest");
    expect(out.issue_refused.errors[0]).toMatch(/never generates or sees end-entity private keys/);
    expect(out.other_sans_refused).toMatchObject({ raised: "InvalidRequest" });
    expect(out.other_sans_refused.errors[0]).toMatch(/other_sans is not supported/);
    expect(out.unknown_role).toMatchObject({ raised: "InvalidRequest" });
    expect(out.unknown_role.errors[0]).toMatch(/unknown role: no-such-role/);
    expect(out.auditor_sign).toMatchObject({ raised: "Forbidden" });
    expect(out.auditor_sign.errors[0]).toMatch(/permission denied: an auditor token may not/);
    expect(out.bad_token).toMatchObject({ raised: "Forbidden" });
  });

  it("logs in with an AppRole: a short-lived client token that issues as the AppRole", async () => {
    const auth = out.approle_login.auth;
    expect(auth.client_token).toMatch(/^hsmcav_/);
    expect(auth).toMatchObject({ lease_duration: 3600, renewable: false });
    expect(auth.accessor).toMatch(/^[0-9a-f]{24}$/);
    const row = await certificateBySerial(t.service.ctx.store.db, hexOf(out.approle_sign.data.serial_number));
    expect(row).toMatchObject({ profile: "tls-server", requestedBy: `approle:${approle.id}` });
    expect(out.approle_bad_secret.raised).toBe("InvalidRequest");
  });
});

/** The CRL's bytes as a Vault client gets them from /v1/pki/crl (DER). */
function crlDer(): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    https
      .get(`${vaultUrl()}/v1/pki/crl`, { ca: t.rootPem }, (r) => {
        if (r.statusCode !== 200 || r.headers["content-type"] !== "application/pkix-crl") reject(new Error(`GET /v1/pki/crl: ${r.statusCode} ${r.headers["content-type"]}`));
        const chunks: Buffer[] = [];
        r.on("data", (d: Buffer) => chunks.push(d));
        r.on("end", () => resolve(Buffer.concat(chunks)));
      })
      .on("error", reject);
  });
}
