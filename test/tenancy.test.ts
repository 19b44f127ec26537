/**
 * Issuer tokens are tenants (docs/api.md): two issuer tokens of the
 * same profile and an ACME account each get certificates; an issuer token
 * sees and revokes only its own, an admin revokes anything. A refused
 * cross-tenant revocation changes nothing: the certificate stays valid,
 * OCSP (openssl) still says good, and keyCompromise blocks no key.
 */
import { execFileSync } from "node:child_process";
import http from "node:http";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROBLEM_TYPE_PREFIX } from "../src/api/problem.ts";
import { isKeyBlocked } from "../src/store/blocked-keys.ts";
import { certificateBySerial } from "../src/store/certificates.ts";
import { AcmeClient, type Account } from "./helpers/acme-client.ts";
import { keyAuthorization, newAccountKey } from "./helpers/acme-jws.ts";
import { makeCsr } from "./helpers/openssl.ts";
import { freePort } from "./helpers/ports.ts";
import { RelyingParty } from "./helpers/relying-party.ts";
import { startTestService, type TestService } from "./helpers/service.ts";
import { waitFor } from "./helpers/wait.ts";

let t: TestService;
let rp: RelyingParty;
let http01: http.Server;
const challengeBodies = new Map<string, string>();
let admin: string;
let auditor: string;
let tenantA: string;
let tenantB: string;

interface Issued {
  serial: string;
  certificate: string;
  keyPem: string;
}

async function issueRest(token: string, name: string): Promise<Issued> {
  const { csr, keyPem } = makeCsr({ subject: `/CN=${name}`, san: `DNS:${name}` });
  const res = await t.api("POST", "/api/v1/certificates", { token, json: { csr, profile: "tls-server", validity: "24h" } });
  expect(res.status, res.text).toBe(201);
  return { serial: res.body.serial, certificate: res.body.certificate, keyPem };
}

/** RFC 8555 for 127.0.0.1 by http-01, answered by the server in this file. */
async function issueAcme(): Promise<Issued> {
  const acme = new AcmeClient(t.service.httpsUrl, t.rootPem);
  try {
    await acme.init();
    const { account } = await acme.newAccount(newAccountKey("ES256"));
    const created = await acme.postAs(account, acme.directory.newOrder, { identifiers: [{ type: "ip", value: "127.0.0.1" }] });
    expect(created.status, created.text).toBe(201);
    const orderUrl = created.location!;
    for (const authzUrl of created.body.authorizations as string[]) {
      const authz = await acme.postAs(account, authzUrl, "");
      const ch = authz.body.challenges.find((x: { type: string }) => x.type === "http-01");
      challengeBodies.set(ch.token, keyAuthorization(ch.token, account.key.jwk));
      expect((await acme.postAs(account, ch.url, {})).status).toBe(200);
      await acme.poll(account, authzUrl, (b) => b.status !== "pending");
    }
    let order = (await acme.poll(account, orderUrl, (b) => b.status !== "pending")).res.body;
    expect(order.status, JSON.stringify(order)).toBe("ready");
    const { csr, keyPem } = makeCsr({ subject: "/CN=127.0.0.1", san: "IP:127.0.0.1" });
    const der = Buffer.from(csr.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64").toString("base64url");
    expect((await acme.postAs(account, order.finalize, { csr: der })).status).toBe(200);
    order = (await acme.poll(account, orderUrl, (b: { status: string }) => b.status !== "processing" && b.status !== "ready")).res.body;
    expect(order.status, JSON.stringify(order)).toBe("valid");
    const chain = (await acme.postAs(account as Account, order.certificate, "")).text;
    const certificate = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/.exec(chain)![0];
    const serial = execFileSync("openssl", ["x509", "-noout", "-serial"], { input: certificate, encoding: "utf8" }).trim().replace(/^serial=/, "").toLowerCase(); // as stored: whole bytes, a leading 0 nibble kept
    return { serial, certificate, keyPem };
  } finally {
    acme.close();
  }
}

const ocspUrl = () => `${t.service.httpUrl}/ocsp`;
async function ocspStatus(c: Issued): Promise<string> {
  const r = await rp.ocsp(ocspUrl(), t.chainPem, t.rootPem, { certPem: c.certificate });
  expect(r.out).toMatch(/Response verify OK/);
  return /cert\.pem: (\w+)/.exec(r.out)?.[1] ?? r.out;
}

async function expectUntouched(c: Issued): Promise<void> {
  const row = (await certificateBySerial(t.service.ctx.store.db, c.serial))!;
  expect(row.status).toBe("valid");
  expect(row.revokedAt).toBeNull();
  expect(await isKeyBlocked(t.service.ctx.store.db, row.spkiSha256)).toBe(false);
  expect(await ocspStatus(c)).toBe("good");
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve((server.address() as net.AddressInfo).port));
  });
}

let mineA: Issued;
let mineB: Issued;
let viaAcme: Issued;

beforeAll(async () => {
  http01 = http.createServer((req, res) => {
    const token = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(req.url ?? "")?.[1];
    const body = token === undefined ? undefined : challengeBodies.get(token);
    res.writeHead(body === undefined ? 404 : 200, { "content-type": "text/plain" }).end(body ?? "");
  });
  t = await startTestService("postgres", {
    HSM_CA_ACME_HTTP01_PORT: String(await listen(http01)),
    HSM_CA_ACME_TLSALPN01_PORT: String(await freePort()),
    HSM_CA_ACME_VALIDATION_TIMEOUT_MS: "5000",
  });
  rp = new RelyingParty();
  [admin, auditor, tenantA, tenantB] = await Promise.all([t.token("admin"), t.token("auditor"), t.token("issuer", "tls-server"), t.token("issuer", "tls-server")]);
  mineA = await issueRest(tenantA, "a.tenant.example.test");
  mineB = await issueRest(tenantB, "b.tenant.example.test");
  viaAcme = await issueAcme();
}, 120_000);
afterAll(async () => {
  await t?.stop();
  rp?.cleanup();
  await new Promise<void>((resolve) => (http01 ? http01.close(() => resolve()) : resolve()));
});

describe("an issuer token", () => {
  it("refuses to revoke another token's or an ACME certificate of its own profile, with keyCompromise, and changes nothing", async () => {
    for (const other of [mineB, viaAcme]) {
      const res = await t.api("POST", `/api/v1/certificates/${other.serial}/revoke`, { token: tenantA, json: { reason: "keyCompromise" } });
      expect(res.status, res.text).toBe(404);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
      expect(res.body.type).toBe(PROBLEM_TYPE_PREFIX + "not-found");
      expect(res.body.detail).toMatch(/only its own certificates/);
      // The same answer as for a serial that does not exist: nothing to learn about other tenants.
      const unknown = await t.api("POST", "/api/v1/certificates/7eadbeef0011/revoke", { token: tenantA, json: { reason: "keyCompromise" } });
      expect(unknown.status).toBe(404);
      expect(unknown.body.detail.replace("7eadbeef0011", other.serial)).toBe(res.body.detail);
      await expectUntouched(other);
    }
    // The key of B's certificate was not barred: B may still use it.
    const again = makeCsr({ subject: "/CN=b2.tenant.example.test", san: "DNS:b2.tenant.example.test", keyPem: mineB.keyPem });
    const reissued = await t.api("POST", "/api/v1/certificates", { token: tenantB, json: { csr: again.csr, profile: "tls-server" } });
    expect(reissued.status, reissued.text).toBe(201);
  });

  it("neither reads nor lists other tenants' certificates; admins and auditors see them all", async () => {
    expect((await t.api("GET", `/api/v1/certificates/${mineA.serial}`, { token: tenantA })).status).toBe(200);
    for (const other of [mineB, viaAcme]) {
      const res = await t.api("GET", `/api/v1/certificates/${other.serial}`, { token: tenantA });
      expect(res.status).toBe(404);
      expect((await t.api("GET", `/api/v1/certificates/${other.serial}`, { token: auditor })).status).toBe(200);
    }
    const listed = await t.api("GET", "/api/v1/certificates?profile=tls-server&limit=500", { token: tenantA });
    expect(listed.status).toBe(200);
    expect(listed.body.items.map((c: { serial: string }) => c.serial)).toEqual([mineA.serial]);
    const all = await t.api("GET", "/api/v1/certificates?limit=500", { token: auditor });
    const serials = all.body.items.map((c: { serial: string }) => c.serial);
    for (const c of [mineA, mineB, viaAcme]) expect(serials).toContain(c.serial);
  });

  it("revokes its own certificate", async () => {
    const res = await t.api("POST", `/api/v1/certificates/${mineA.serial}/revoke`, { token: tenantA, json: { reason: "keyCompromise" } });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ status: "revoked", revocationReason: "keyCompromise", alreadyRevoked: false });
    const row = (await certificateBySerial(t.service.ctx.store.db, mineA.serial))!;
    expect(await isKeyBlocked(t.service.ctx.store.db, row.spkiSha256)).toBe(true);
  });
});

describe("an admin token", () => {
  it("revokes any certificate, another token's and an ACME one alike", async () => {
    for (const c of [mineB, viaAcme]) {
      const res = await t.api("POST", `/api/v1/certificates/${c.serial}/revoke`, { token: admin, json: { reason: "superseded" } });
      expect(res.status, res.text).toBe(200);
      expect(res.body).toMatchObject({ status: "revoked", revocationReason: "superseded" });
    }
    await waitFor("OCSP says the ACME certificate is revoked", async () => (await ocspStatus(viaAcme)) === "revoked", { timeoutMs: 5_000, intervalMs: 200 });
  });
});
