import { execFile, execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import { auditEntriesPage } from "../src/store/audit.ts";
import { checkVaultRoles } from "../src/vault/roles.ts";
import { vaultRoutes } from "../src/vault/router.ts";
import { certificateBySerial } from "../src/store/certificates.ts";
import { REPO, runCliInProcess } from "./helpers/cli.ts";
import { makeCsr, makeKey, tempDir } from "./helpers/openssl.ts";
import { parsePrometheusText } from "./helpers/prometheus.ts";
import { verifyWithAll } from "./helpers/relying-parties.ts";
import { startTestService, type TestService } from "./helpers/service.ts";
import { waitFor } from "./helpers/wait.ts";
import nodeVault from "node-vault";

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

/**
 * The shipped profiles and one more CA profile, for automation: SPIRE's
 * upstream CA, mesh-intermediate's rules without its approvals (a CA
 * profile that needs approvals cannot issue through the Vault API).
 */
function profilesWithSpireCa(): string {
  const profiles = path.join(dir, "profiles");
  fs.cpSync(path.join(REPO, "profiles"), profiles, { recursive: true });
  const mesh = fs.readFileSync(path.join(profiles, "mesh-intermediate.yaml"), "utf8");
  fs.writeFileSync(
    path.join(profiles, "spire-upstream.yaml"),
    mesh.replace(/^name: mesh-intermediate$/m, "name: spire-upstream").replace(/^approvals: .*$/m, "approvals: { required: 0 }"),
  );
  return profiles;
}

beforeAll(async () => {
  dir = tempDir("hsmca-vault-");
  t = await startTestService("postgres", {
    HSM_CA_PROFILES_DIR: profilesWithSpireCa(),
    HSM_CA_VAULT_ROLES: "web=tls-server,mesh=spiffe-svid",
    HSM_CA_VAULT_CA_PROFILE: "spire-upstream",
    HSM_CA_RATE_LIMIT_PER_TOKEN: "600/m burst 60",
  });
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
      ADMIN_TOKEN: admin,
      VAULT_ROLE: "web",
      CSR_FILE: csrFile("hvac.csr", "hvac.example.test", "DNS:hvac.example.test"),
      CSR_CN: "hvac.example.test",
      ROLE_ID: approle.roleId,
      SECRET_ID: approle.secretId,
      OTHER_CSR_FILE: csrFile("approle.csr", "approle.example.test", "DNS:approle.example.test"),
      OTHER_CN: "approle.example.test",
      // What SPIRE's server asks its upstream CA to sign: its own CA key, named by its trust domain.
      INTERMEDIATE_CSR_FILE: csrFile("spire-ca.csr", "spire-ca", "URI:spiffe://cluster.local"),
      INTERMEDIATE_CN: "spire-ca",
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

  it("signs a CSR: Vault's envelope, a colon-hex serial, a chain four relying parties accept, the ttl asked for", async () => {
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
    expect(verdicts.nss.ok, verdicts.nss.detail).toBe(true);
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

  it("signs an intermediate through the CA profile: pathLen 0, name constraints, a chain three relying parties accept", async () => {
    expect(out.intermediate_by_issuer.raised).toBe("Forbidden");
    expect(out.intermediate_by_issuer.errors[0]).toMatch(/may not issue from profile spire-upstream/);
    const data = out.intermediate.data;
    const subCa = new x509.X509Certificate(data.certificate);
    const bc = subCa.getExtension(x509.BasicConstraintsExtension)!;
    expect(bc).toMatchObject({ ca: true, pathLength: 0 });
    expect(subCa.getExtension("2.5.29.30"), "name constraints").toBeTruthy();
    expect(subCa.subject).toContain("CN=spire-ca");
    expect(subCa.notAfter.getTime() - subCa.notBefore.getTime()).toBeLessThanOrEqual(48 * 3600_000 + 60_000);
    expect(data.issuing_ca.trim()).toBe(firstPem(t.chainPem).trim());
    expect(data.ca_chain).toEqual([firstPem(t.chainPem).trim(), t.rootPem.trim()]);
    const verdicts = await verifyWithAll({ roots: [t.rootPem], intermediates: [data.issuing_ca], leaf: data.certificate });
    expect(verdicts.openssl.ok, verdicts.openssl.detail).toBe(true);
    expect(verdicts.go.ok, verdicts.go.detail).toBe(true);
    expect(verdicts.gnutls.ok, verdicts.gnutls.detail).toBe(true);
    // NSS's certutil -V checks end-entity usages only (server, client, code signing): not a CA certificate's.
    expect(await certificateBySerial(t.service.ctx.store.db, hexOf(data.serial_number))).toMatchObject({ profile: "spire-upstream", requestedBy: tokenId(admin) });
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

describe("node-vault, unchanged", () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const client = (token?: string, extra: Record<string, unknown> = {}): any =>
    nodeVault({ endpoint: vaultUrl(), token, requestOptions: { ca: t.rootPem }, ...extra });

  it("reads health, signs through a mapped role, reads the CA, and lists with LIST and with GET ?list=true", async () => {
    const v = client(issuer);
    expect(await v.health()).toMatchObject({ initialized: true, sealed: false });
    const { csr } = makeCsr({ subject: "/CN=node.example.test", san: "DNS:node.example.test,IP:10.1.2.3" });
    const signed = await v.write("pki/sign/web", { csr, common_name: "node.example.test", ip_sans: "10.1.2.3", ttl: 3600 });
    const cert = new x509.X509Certificate(signed.data.certificate);
    expect(cert.notAfter.getTime() - cert.notBefore.getTime()).toBeLessThanOrEqual(3600_000 + 60_000);
    expect((await certificateBySerial(t.service.ctx.store.db, hexOf(signed.data.serial_number)))?.requestedBy).toBe(tokenId(issuer));
    const ca = await v.read("pki/cert/ca");
    expect(ca.data.certificate.trim()).toBe(firstPem(t.chainPem).trim());
    expect((await v.list("pki/certs")).data.keys).toContain(signed.data.serial_number);
    const getList = client(issuer, { noCustomHTTPVerbs: true });
    expect((await getList.list("pki/certs")).data.keys).toContain(signed.data.serial_number);
  });

  it("logs in with an AppRole and uses the client token it got", async () => {
    const v = client();
    const login = await v.approleLogin({ role_id: approle.roleId, secret_id: approle.secretId });
    expect(v.token).toBe(login.auth.client_token);
    const { csr } = makeCsr({ subject: "/CN=node-approle.example.test", san: "DNS:node-approle.example.test" });
    const signed = await v.write("pki/sign/tls-server", { csr, common_name: "node-approle.example.test" });
    expect((await certificateBySerial(t.service.ctx.store.db, hexOf(signed.data.serial_number)))?.requestedBy).toBe(`approle:${approle.id}`);
  });

  it("gets Vault's errors as node-vault reports them", async () => {
    const { csr } = makeCsr({ subject: "/CN=x.example.test", san: "DNS:x.example.test" });
    await expect(client(clientIssuer).write("pki/sign/web", { csr })).rejects.toMatchObject({
      message: expect.stringMatching(/permission denied: this token may not issue from role web \(profile tls-server\)/),
      response: { statusCode: 403 },
    });
  });
});

/** test/fixtures/vault-sign built once (Go's standard library only, no network), as relying-parties.ts builds go-verify. */
let vaultSignBin: Promise<string> | undefined;
function vaultSign(): Promise<string> {
  vaultSignBin ??= (async () => {
    const source = path.join(REPO, "test/fixtures/vault-sign/main.go");
    const hash = crypto.createHash("sha256").update(fs.readFileSync(source)).digest("hex").slice(0, 16);
    const bin = path.join(os.tmpdir(), `hsm-ca-vault-sign-${hash}`, "vault-sign");
    if (fs.existsSync(bin)) return bin;
    fs.mkdirSync(path.dirname(bin), { recursive: true });
    const partial = `${bin}.${process.pid}`;
    await run("go", ["build", "-o", partial, source], {
      env: { ...process.env, GOCACHE: path.join(os.tmpdir(), "hsm-ca-go-cache"), GOPATH: path.join(os.tmpdir(), "hsm-ca-gopath"), GO111MODULE: "off", GOFLAGS: "" },
      timeout: 120_000,
    });
    fs.renameSync(partial, bin);
    return bin;
  })();
  return vaultSignBin;
}

async function certManagerSign(token: string, signPath: string, csr: string, duration = "24h"): Promise<{ code: number; result: any }> {
  const bin = await vaultSign();
  try {
    const { stdout } = await run(bin, ["-addr", vaultUrl(), "-root", rootFile, "-token", token, "-path", signPath, "-csr", csr, "-duration", duration], { timeout: 60_000 });
    return { code: 0, result: JSON.parse(stdout) };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    if (e.code === 2) return { code: 2, result: JSON.parse(e.stdout!) };
    throw new Error(`vault-sign failed: ${e.stderr ?? err}`);
  }
}

describe("cert-manager's Vault issuer request (Go, crypto/x509)", () => {
  it("signs a CSR with DNS and IP names; the chain from data.certificate, data.issuing_ca and data.ca_chain verifies", async () => {
    const csr = csrFile("cm.csr", "cm.example.test", "DNS:cm.example.test,DNS:www.cm.example.test,IP:10.9.8.7");
    const { code, result } = await certManagerSign(issuer, "pki/sign/web", csr, "720h0m0s");
    expect(code, JSON.stringify(result)).toBe(0);
    expect(result, JSON.stringify(result)).toMatchObject({ ok: true, chainLength: 3, dnsNames: ["cm.example.test", "www.cm.example.test"] });
    expect(Math.round(result.lifetimeHours)).toBe(720);
    expect((await certificateBySerial(t.service.ctx.store.db, hexOf(result.serial)))?.profile).toBe("tls-server");
  });

  it("signs an SVID through a mapped role with uri_sans", async () => {
    const csr = csrFile("svid.csr", "svid", "URI:spiffe://example.org/ns/default/sa/web");
    const { code, result } = await certManagerSign(admin, "pki/sign/mesh", csr, "1h");
    expect(code, JSON.stringify(result)).toBe(0);
    expect((await certificateBySerial(t.service.ctx.store.db, hexOf(result.serial)))?.profile).toBe("spiffe-svid");
  });

  it("gets a 403 in Vault's form for a token outside the role's profile", async () => {
    const csr = csrFile("cm-denied.csr", "denied.example.test", "DNS:denied.example.test");
    const { code, result } = await certManagerSign(clientIssuer, "pki/sign/web", csr);
    expect(code).toBe(2);
    expect(result.status).toBe(403);
    expect(result.errors[0]).toMatch(/may not issue from role web/);
  });
});

describe("the same rules as REST", () => {
  it("refuses what the profile refuses with REST's own words (400)", async () => {
    for (const [what, opts] of [
      ["a weak key", { subject: "/CN=weak.example.test", san: "DNS:weak.example.test", keyPem: makeKey("rsa-1024") }],
      ["a public name", { subject: "/CN=www.example.invalid", san: "DNS:www.example.invalid" }],
    ] as const) {
      const { csr } = makeCsr(opts);
      const rest = await t.api("POST", "/api/v1/certificates", { token: issuer, json: { csr, profile: "tls-server" } });
      expect(rest.status, what).toBe(400);
      const v = await vault("POST", "/v1/pki/sign/web", { token: issuer, json: { csr } });
      expect(v.status, what).toBe(400);
      expect(v.body, what).toEqual({ errors: [rest.body.detail] });
    }
  });

  it("refuses names the CSR does not carry: hsm-ca adds none", async () => {
    const { csr } = makeCsr({ subject: "/CN=one.example.test", san: "DNS:one.example.test" });
    const v = await vault("POST", "/v1/pki/sign/web", { token: issuer, json: { csr, common_name: "one.example.test", alt_names: "two.example.test" } });
    expect(v.status).toBe(400);
    expect(v.body.errors[0]).toMatch(/the CSR does not carry: alt_names two.example.test/);
  });

  it("keeps issuer tokens to their own certificates, as REST does (read 404, revoke 400), and lets admins see all", async () => {
    const { csr } = makeCsr({ subject: "/CN=mine.example.test", san: "DNS:mine.example.test" });
    const signed = await vault("POST", "/v1/pki/sign/web", { token: issuer, json: { csr } });
    expect(signed.status).toBe(200);
    const serial = signed.body.data.serial_number;
    const other = await t.token("issuer", "tls-server");
    expect((await vault("GET", `/v1/pki/cert/${serial}`, { token: other })).status).toBe(404);
    const revoke = await vault("POST", "/v1/pki/revoke", { token: other, json: { serial_number: serial } });
    expect(revoke.status).toBe(400);
    expect((await certificateBySerial(t.service.ctx.store.db, hexOf(serial)))!.status).toBe("valid");
    expect((await vault("GET", `/v1/pki/certs?list=true`, { token: other })).status).toBe(404); // Vault: an empty list is a 404
    expect((await vault("GET", `/v1/pki/cert/${hexOf(serial)}`, { token: admin })).body.data.certificate).toBe(signed.body.data.certificate);
  });

  it("sign-verbatim is for admins", async () => {
    const { csr } = makeCsr({ subject: "/CN=verbatim.example.test", san: "DNS:verbatim.example.test" });
    expect((await vault("POST", "/v1/pki/sign-verbatim/web", { token: issuer, json: { csr } })).status).toBe(403);
    const ok = await vault("POST", "/v1/pki/sign-verbatim/web", { token: admin, json: { csr, format: "der" } });
    expect(ok.status).toBe(200);
    expect(new x509.X509Certificate(Buffer.from(ok.body.data.certificate, "base64")).subject).toContain("verbatim.example.test");
  });

  it("rate-limits per token, answering 429 in Vault's form", async () => {
    const busy = await t.token("issuer", "tls-server");
    const answers = await Promise.all(Array.from({ length: 80 }, () => vault("GET", "/v1/pki/cert/00:01", { token: busy })));
    const limited = answers.filter((a) => a.status === 429);
    expect(limited.length).toBeGreaterThan(0);
    expect(limited[0]!.body.errors[0]).toMatch(/more requests than its limit/);
    // Another token is not affected.
    expect((await vault("GET", "/v1/pki/cert/00:01", { token: issuer })).status).toBe(404);
  });

  it("audits Vault issuance with the Vault path and role, and counts it with source vault", async () => {
    await t.service.ctx.audit!.flush();
    const entries = await auditEntriesPage(t.service.ctx.store.db, { afterSeq: 0, limit: 100_000 });
    const viaVault = entries.filter((e) => e.kind === "certificate.issue" && (e.details as any).via?.door === "vault");
    expect(viaVault.length).toBeGreaterThanOrEqual(5);
    expect(viaVault.map((e) => (e.details as any).via)).toContainEqual({ door: "vault", path: "/v1/pki/sign/web", role: "web" });
    expect(viaVault.map((e) => (e.details as any).via)).toContainEqual({ door: "vault", path: "/v1/pki/sign/mesh", role: "mesh" });
    expect(entries.some((e) => e.kind === "vault.approle.login" && e.subject === approle.id)).toBe(true);
    const metrics = parsePrometheusText(await (await fetch(`${t.service.httpUrl}/metrics`)).text());
    expect(metrics.value("hsmca_issuance_total", { source: "vault", profile: "tls-server", outcome: "issued" })).toBeGreaterThanOrEqual(5);
    expect(metrics.value("hsmca_issuance_total", { source: "vault", profile: "spiffe-svid", outcome: "issued" })).toBe(1);
    // The weak key, the public name and the name not in the CSR, as REST counts its refusals.
    expect(metrics.value("hsmca_issuance_total", { source: "vault", outcome: "refused" })).toBeGreaterThanOrEqual(3);
  });
});

describe("SPIRE's UpstreamAuthority \"vault\" requests", () => {
  it("reads auth/token/lookup-self, then sends its sign-intermediate body (common_name, organization, country, csr, ttl): signed, nothing ignored", async () => {
    const spire = await t.token("issuer", "spire-upstream");
    expect((await vault("GET", "/v1/auth/token/lookup-self", { token: spire })).body.data).toMatchObject({ id: spire, ttl: 0, renewable: false });
    // SPIRE's ca_subject with a common_name: a CA profile takes its subject's CN from the CSR.
    const { csr } = makeCsr({ subject: "/C=US/O=SPIFFE/CN=spire-server-ca", san: "URI:spiffe://cluster.local" });
    const res = await vault("POST", "/v1/pki/root/sign-intermediate", {
      token: spire,
      json: { common_name: "spire-server-ca", organization: "SPIFFE", country: "US", csr, ttl: "24h" },
    });
    expect(res.status, res.text).toBe(200);
    expect(res.body.warnings).toBeNull();
    expect(new x509.X509Certificate(res.body.data.certificate).getExtension(x509.BasicConstraintsExtension)).toMatchObject({ ca: true, pathLength: 0 });
    expect(res.body.data.ca_chain).toHaveLength(2);
  });
});

describe("Vault's errors for paths and methods", () => {
  it("404 for an unknown path, 405 for a known path's wrong method, in Vault's form", async () => {
    const unknown = await vault("GET", "/v1/pki/roles/web", { token: admin });
    expect(unknown.status).toBe(404);
    expect(unknown.body.errors[0]).toMatch(/no handler for route/);
    const otherMount = await vault("POST", "/v1/pki_int/sign/web", { token: admin, json: {} });
    expect(otherMount.status).toBe(404);
    const wrong = await vault("GET", "/v1/pki/sign/web", { token: admin });
    expect(wrong.status).toBe(405);
    expect(wrong.body).toEqual({ errors: [expect.stringMatching(/unsupported operation/)] });
    expect((await vault("DELETE", "/v1/pki/revoke", { token: admin })).status).toBe(405);
    const big = await vault("POST", "/v1/pki/sign/web", { token: issuer, json: { csr: "x".repeat(70_000) } });
    expect(big.status).toBe(400);
    expect(big.body.errors[0]).toMatch(/larger than 65536 bytes/);
    const notJson = await t.api("POST", "/v1/pki/sign/web", { headers: { "x-vault-token": issuer }, raw: "csr=abc" });
    expect(notJson.status).toBe(400);
    expect(notJson.body.errors[0]).toMatch(/failed to parse JSON input/);
  });

  it("serves the CA unauthenticated as Vault does: /ca is DER, /ca/pem and /ca_chain PEM, cert/ca_chain JSON", async () => {
    const der = await vault("GET", "/v1/pki/ca/pem");
    expect(der.text.trim()).toBe(firstPem(t.chainPem).trim());
    const chain = await vault("GET", "/v1/pki/cert/ca_chain");
    expect(chain.body.data.ca_chain).toEqual([firstPem(t.chainPem).trim(), t.rootPem.trim()]);
    const crl = await vault("GET", "/v1/pki/crl/pem");
    expect(crl.text).toMatch(/^-----BEGIN X509 CRL-----/);
  });
});

describe("AppRoles from the CLI", () => {
  it("lists them without secrets, and a revoked AppRole's logins and client tokens are refused", async () => {
    const login = await vault("POST", "/v1/auth/approle/login", { json: { role_id: approle.roleId, secret_id: approle.secretId } });
    expect(login.status).toBe(200);
    const clientToken = login.body.auth.client_token;
    // auth/token/lookup-self, as SPIRE's token_auth reads it: a client token's ttl counts down, an API token's is 0 (never expires).
    const self = await vault("GET", "/v1/auth/token/lookup-self", { token: clientToken });
    expect(self.status).toBe(200);
    expect(self.body.data).toMatchObject({ id: clientToken, renewable: false });
    expect(self.body.data.ttl).toBeGreaterThan(3500);
    expect(self.body.data.ttl).toBeLessThanOrEqual(3600);
    expect((await vault("GET", "/v1/auth/token/lookup-self", { token: issuer })).body.data).toMatchObject({ id: issuer, ttl: 0, renewable: false });
    const list = await runCliInProcess(["vault", "approle", "list"], t.env);
    expect(list.stdout).toContain("cert-manager");
    expect(list.stdout).toContain(approle.roleId);
    expect(list.stdout).not.toContain(approle.secretId);
    const revoked = await runCliInProcess(["vault", "approle", "revoke", "cert-manager"], t.env);
    expect(revoked.code, revoked.stderr).toBe(0);
    const { csr } = makeCsr({ subject: "/CN=late.example.test", san: "DNS:late.example.test" });
    expect((await vault("POST", "/v1/pki/sign/web", { token: clientToken, json: { csr } })).status).toBe(403);
    expect((await vault("POST", "/v1/auth/approle/login", { json: { role_id: approle.roleId, secret_id: approle.secretId } })).status).toBe(400);
    const bad = await runCliInProcess(["vault", "approle", "create", "--name", "x", "--profile", "no-such-profile"], t.env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/no profile "no-such-profile"/);
  });
});

describe("settings", () => {
  it("a role mapped to a missing profile stops the start, naming the setting", async () => {
    await expect(startTestService("pglite", { HSM_CA_VAULT_ROLES: "web=no-such-profile" })).rejects.toThrow(/HSM_CA_VAULT_ROLES: role web names profile "no-such-profile"/);
  });

  it("HSM_CA_VAULT_API=off turns the API off; HSM_CA_VAULT_MOUNT moves it", async () => {
    expect(loadConfig({ ...t.env, HSM_CA_VAULT_API: "off" }).vault).toBeUndefined();
    expect(loadConfig(t.env).vault).toEqual({ mount: "pki", roles: { web: "tls-server", mesh: "spiffe-svid" }, caProfile: "spire-upstream" });
    expect(() => loadConfig({ ...t.env, HSM_CA_VAULT_ROLES: "web:tls-server" })).toThrow(/HSM_CA_VAULT_ROLES/);
    // One SoftHSM2 configuration a process: the router itself, on this service's parts, with another mount.
    const ctx = t.service.ctx;
    const router = vaultRoutes({
      db: ctx.store.db,
      profiles: ctx.profiles,
      issuer: ctx.issuer,
      log: ctx.log,
      now: () => new Date(),
      settings: loadConfig({ ...t.env, HSM_CA_VAULT_MOUNT: "pki_int" }).vault!,
      authenticateApiToken: async () => undefined,
      ready: async () => ({ ok: true, detail: "ready" }),
    });
    expect((await (await router.request("/pki_int/ca/pem")).text()).trim()).toBe(firstPem(t.chainPem).trim());
    const old = await router.request("/pki/ca/pem");
    expect(old.status).toBe(404);
    expect(await old.json()).toEqual({ errors: [expect.stringMatching(/mount "pki_int"/)] });
  });

  it("a CA profile that needs approvals is refused at sign-intermediate, pointing at REST's queue; several CA profiles need HSM_CA_VAULT_CA_PROFILE", async () => {
    const ctx = t.service.ctx;
    const asAdmin = async () => ({ tokenId: tokenId(admin), role: "admin" as const, profiles: [] });
    const router = (caProfile?: string) =>
      vaultRoutes({
        db: ctx.store.db,
        profiles: ctx.profiles,
        issuer: ctx.issuer,
        log: ctx.log,
        now: () => new Date(),
        settings: { mount: "pki", roles: {}, caProfile },
        authenticateApiToken: asAdmin,
        ready: async () => ({ ok: true, detail: "ready" }),
      });
    const csr = makeCsr({ subject: "/CN=istio-ca", san: "URI:spiffe://cluster.local" }).csr;
    const post = (r: ReturnType<typeof router>) =>
      r.request("/pki/root/sign-intermediate", { method: "POST", headers: { "x-vault-token": admin }, body: JSON.stringify({ csr, common_name: "istio-ca" }) });
    const gated = await post(router("mesh-intermediate"));
    expect(gated.status).toBe(400);
    expect((await gated.json()).errors[0]).toMatch(/only after 2 admins approve.*POST \/api\/v1\/certificates/);
    const unchosen = await post(router(undefined));
    expect(unchosen.status).toBe(400);
    expect((await unchosen.json()).errors[0]).toMatch(/there are several \(.*mesh-intermediate.*\): set HSM_CA_VAULT_CA_PROFILE/);
    expect(() => checkVaultRoles({ mount: "pki", roles: {}, caProfile: "tls-server" }, ctx.profiles)).toThrow(/HSM_CA_VAULT_CA_PROFILE: "tls-server" is not a CA profile/);
  });
});
