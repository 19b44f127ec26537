import fs from "node:fs";
import path from "node:path";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROBLEM_TYPE_PREFIX } from "../src/api/problem.ts";
import { createApprovalRequest } from "../src/approvals/requests.ts";
import { createApiToken } from "../src/auth/api-tokens.ts";
import { destroyRetiredKeys } from "../src/jobs/key-cleanup.ts";
import { loadConfig } from "../src/config.ts";
import { loadAcmeProfiles } from "../src/policy/profiles.ts";
import { createLogger } from "../src/logger.ts";
import { startService, type Service } from "../src/service.ts";
import { listApprovalRequests } from "../src/store/approvals.ts";
import { listCas } from "../src/store/cas.ts";
import { certificateBySerial, countCertificates } from "../src/store/certificates.ts";
import { auditLog } from "../src/store/schema.ts";
import { and, eq } from "drizzle-orm";
import { runCliInProcess, type CliResult } from "./helpers/cli.ts";
import { makeCsr, openssl, tempDir, verify, x509Text } from "./helpers/openssl.ts";
import { startTestService, type TestService } from "./helpers/service.ts";
import { waitFor } from "./helpers/wait.ts";
import { apiClient } from "./helpers/https.ts";
import { createTestDatabase } from "./helpers/postgres.ts";

/**
 * M-of-N approval: code-signing certificates and CA changes (a manual
 * rotation, a key destruction) wait until two admins other than the
 * requester approve. The real service on PGlite (so the CLI goes through
 * the control socket), the CLI's main() with tokens from HSM_CA_TOKEN or
 * --token-file, openssl on what comes out; expiry on a second service on
 * PostgreSQL, where the CLI opens the database and the HSM itself.
 */
let t: TestService;
const tok: Record<"requester" | "b" | "c" | "d" | "auditor" | "signer" | "tls", string> = {} as never;
const cliOutput: string[] = [];
const work = tempDir("hsmca-approvals-");

beforeAll(async () => {
  t = await startTestService("pglite");
  const db = t.service.ctx.store.db;
  const make = async (role: "admin" | "issuer" | "auditor", profiles?: string[]) => (await createApiToken(db, { role, profiles })).secret;
  Object.assign(tok, {
    requester: await make("admin"),
    b: await make("admin"),
    c: await make("admin"),
    d: await make("admin"),
    auditor: await make("auditor"),
    signer: await make("issuer", ["code-signing"]),
    tls: await make("issuer", ["tls-server"]),
  });
});
afterAll(async () => {
  await t?.stop();
  fs.rmSync(work, { recursive: true, force: true });
});

const db = () => t.service.ctx.store.db;
const idOf = (token: string) => token.split("_")[1]!;
const codeSigningCsr = (cn = "Release Signing") => makeCsr({ key: "ec-p384", subject: `/CN=${cn}/O=Example Corp` });
const submit = (csr: string, token = tok.requester) => t.api("POST", "/api/v1/certificates", { token, json: { csr, profile: "code-signing", validity: "30d" } });
const approve = (id: string, token: string) => t.api("POST", `/api/v1/requests/${id}/approve`, { token });
const reject = (id: string, token: string) => t.api("POST", `/api/v1/requests/${id}/reject`, { token });
const get = (id: string, token = tok.auditor) => t.api("GET", `/api/v1/requests/${id}`, { token });

/** An approved CA change is carried out by the service's job, not in the approving request: reads the request until it has an outcome. */
async function outcomeOf(id: string): Promise<Awaited<ReturnType<typeof get>>> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const res = await get(id);
    if (!["pending", "approved"].includes(res.body.status) || Date.now() > deadline) return res;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The CLI as a user runs it, from a directory of their own, as a token's holder (its main() in this process). */
async function cli(args: string[], token?: string, cwd = work, extraEnv: Record<string, string> = {}, env = t.env): Promise<CliResult> {
  const result = await runCliInProcess(args, { ...env, ...(token ? { HSM_CA_TOKEN: token } : {}), ...extraEnv }, cwd);
  cliOutput.push(result.stdout, result.stderr);
  return result;
}

/** A code-signing certificate that openssl accepts: chain to the root, the EKU, a CMS signature on an artifact. */
function expectCodeSigning(certPem: string, chainPem: string, keyPem: string): void {
  expect(verify(t.rootPem, chainPem, certPem).ok).toBe(true);
  // OpenSSL 3.0 has no "codesign" purpose (3.2 adds it): the EKU is checked here, the chain and a real signature below.
  expect(x509Text(certPem)).toMatch(/Extended Key Usage:\s*\n\s*Code Signing/);
  const dir = tempDir("cms-");
  const f = (name: string, body: string) => (fs.writeFileSync(path.join(dir, name), body), path.join(dir, name));
  const artifact = f("artifact.bin", "release 1.0\n");
  openssl(["cms", "-sign", "-binary", "-in", artifact, "-signer", f("cert.pem", certPem), "-inkey", f("key.pem", keyPem),
    "-certfile", f("chain.pem", chainPem), "-outform", "DER", "-out", path.join(dir, "sig.der")]);
  const out = openssl(["cms", "-verify", "-binary", "-inform", "DER", "-in", path.join(dir, "sig.der"), "-content", artifact,
    "-CAfile", f("root.pem", t.rootPem), "-purpose", "any", "-out", "/dev/null"]);
  fs.rmSync(dir, { recursive: true, force: true });
  expect(out).toBe("");
}

describe("code signing over REST", () => {
  it("waits for two admins other than the requester, then issues, stores and shows the certificate", async () => {
    const { csr, keyPem } = codeSigningCsr();
    const before = await countCertificates(db());
    const res = await submit(csr);
    expect(res.status, res.text).toBe(202);
    const id = res.body.id as string;
    expect(res.headers.location).toBe(`/api/v1/requests/${id}`);
    expect(res.body).toMatchObject({ id, status: "pending", required: 2, approvals: [], kind: "issue", requestedBy: idOf(tok.requester) });
    expect(Date.parse(res.body.expiresAt) - Date.now()).toBeGreaterThan(23 * 3_600_000);

    const own = await approve(id, tok.requester);
    expect(own.status).toBe(403);
    expect(own.body.detail).toMatch(/another admin must approve/);
    expect((await approve(id, tok.signer)).status).toBe(403); // not an admin

    const first = await approve(id, tok.b);
    expect(first.status, first.text).toBe(200);
    expect(first.body).toMatchObject({ status: "pending", approvals: [{ approver: idOf(tok.b), decision: "approve" }] });
    expect((await approve(id, tok.b)).status).toBe(409); // once per admin
    expect(await countCertificates(db())).toBe(before);

    const second = await approve(id, tok.c);
    expect(second.status, second.text).toBe(200);
    expect(second.body.status).toBe("done");
    expect(second.body.approvals.map((a: { approver: string }) => a.approver).sort()).toEqual([idOf(tok.b), idOf(tok.c)].sort());
    const serial = second.body.result.serial as string;
    const stored = await certificateBySerial(db(), serial);
    expect(stored).toMatchObject({ profile: "code-signing", requestedBy: idOf(tok.requester) });
    expect(stored!.subject).toMatch(/CN=Release Signing/);
    expect(await countCertificates(db())).toBe(before + 1);
    // The audit log names the certificate and the request that was approved.
    await t.service.ctx.audit!.flush();
    const issuedEntries = await db().select().from(auditLog).where(and(eq(auditLog.kind, "certificate.issue"), eq(auditLog.subject, serial)));
    expect(issuedEntries).toHaveLength(1);
    expect(issuedEntries[0]!.details).toMatchObject({ approved_request: id });

    // The requester reads it back, with the certificate and its chain; so does an auditor; another issuer does not see it.
    const shown = await get(id, tok.requester);
    expect(shown.status).toBe(200);
    expect(shown.body).toMatchObject({ status: "done", result: { serial }, certificate: stored!.certificatePem });
    expect((await get(id)).body.status).toBe("done");
    expect((await get(id, tok.tls)).status).toBe(404);
    expectCodeSigning(shown.body.certificate, shown.body.chain, keyPem);
    expect((await approve(id, tok.d)).status).toBe(409);
  });

  it("refuses a bad request at once and stores nothing", async () => {
    const requests = (await listApprovalRequests(db(), { limit: 500 })).length;
    const certificates = await countCertificates(db());
    const withName = makeCsr({ key: "ec-p384", subject: "/CN=Signer", san: "DNS:app.example.test" }).csr;
    const bad = await submit(withName);
    expect(bad.status).toBe(400);
    expect(bad.body.type).toBe(PROBLEM_TYPE_PREFIX + "rejected-identifier");
    const tooLong = await t.api("POST", "/api/v1/certificates", { token: tok.requester, json: { csr: codeSigningCsr().csr, profile: "code-signing", validity: "2000d" } });
    expect(tooLong.status).toBe(400);
    expect((await submit(codeSigningCsr().csr, tok.tls)).status).toBe(403); // an issuer for other profiles
    expect((await listApprovalRequests(db(), { limit: 500 })).length).toBe(requests);
    expect(await countCertificates(db())).toBe(certificates);
  });

  it("ends with one rejection", async () => {
    const before = await countCertificates(db());
    const res = await submit(codeSigningCsr().csr, tok.signer);
    expect(res.status).toBe(202);
    const rejected = await reject(res.body.id, tok.b);
    expect(rejected.status).toBe(200);
    expect(rejected.body).toMatchObject({ status: "rejected", approvals: [{ approver: idOf(tok.b), decision: "reject" }] });
    const late = await approve(res.body.id, tok.c);
    expect(late.status).toBe(409);
    expect(late.body.type).toBe(PROBLEM_TYPE_PREFIX + "not-pending");
    expect((await get(res.body.id, tok.signer)).body).toMatchObject({ status: "rejected", approvals: [{ approver: idOf(tok.b), decision: "reject" }] });
    expect(await countCertificates(db())).toBe(before);
  });

  it("issues once when approvals race", async () => {
    const res = await submit(codeSigningCsr("Racer").csr);
    const before = await countCertificates(db());
    const answers = await Promise.all([tok.b, tok.c, tok.d].map((token) => approve(res.body.id, token)));
    expect(answers.map((a) => a.status).sort()).toEqual([200, 200, 409]);
    expect(answers.filter((a) => a.body.status === "done")).toHaveLength(1);
    expect(await countCertificates(db())).toBe(before + 1);
    expect((await get(res.body.id)).body.approvals).toHaveLength(2);
  });

  it("keeps ACME away from a profile that needs approvals: such a directory does not load", () => {
    const dir = tempDir("acme-dirs-");
    fs.writeFileSync(path.join(dir, "signing.yaml"), "name: signing\ncertificateProfile: code-signing\nidentifiers:\n  dns: { suffixes: [example.com] }\n");
    expect(() => loadAcmeProfiles(dir, t.service.ctx.profiles)).toThrow(/signing\.yaml: certificateProfile: profile "code-signing" requires approvals/);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("leaves tls-server alone: 201 at once", async () => {
    const res = await t.api("POST", "/api/v1/certificates", { token: tok.tls, json: { csr: makeCsr({ san: "DNS:plain.example.test" }).csr, profile: "tls-server" } });
    expect(res.status, res.text).toBe(201);
  });

  it("lists requests for admins and auditors only, by status", async () => {
    await submit(codeSigningCsr("Listed").csr);
    const pending = await t.api("GET", "/api/v1/requests?status=pending", { token: tok.auditor });
    expect(pending.status).toBe(200);
    expect(pending.body.items.length).toBeGreaterThanOrEqual(1);
    expect(pending.body.items.every((i: { status: string }) => i.status === "pending")).toBe(true);
    const done = await t.api("GET", "/api/v1/requests?status=done", { token: tok.b });
    expect(done.body.items.length).toBeGreaterThanOrEqual(2);
    expect((await t.api("GET", "/api/v1/requests", { token: tok.signer })).status).toBe(403);
    expect((await t.api("GET", "/api/v1/requests?status=bogus", { token: tok.auditor })).status).toBe(400);
  });
});

describe("code signing with the CLI", () => {
  it("submits with hsm-ca issue, two admins approve with hsm-ca approve, --wait writes the certificate", async () => {
    const { csr, keyPem } = codeSigningCsr("CLI Signing");
    fs.writeFileSync(path.join(work, "app.csr"), csr);
    // --csr and --out are relative to the CLI's own directory, not the service's.
    const submitted = await cli(["issue", "--profile", "code-signing", "--csr", "app.csr", "--out", "early.pem"], tok.signer);
    expect(submitted.code, submitted.stderr).toBe(3);
    const m = /^request ([0-9a-f]{16}) pending: 0 of 2 approvals/.exec(submitted.stdout);
    expect(m, submitted.stdout).not.toBeNull();
    const id = m![1]!;
    expect(submitted.stderr).toMatch(new RegExp(`hsm-ca approve ${id}`));
    expect(fs.existsSync(path.join(work, "early.pem"))).toBe(false);

    const [listed, byB] = await Promise.all([cli(["requests", "--status", "pending"], tok.auditor), cli(["approve", id], tok.b)]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(new RegExp(`${id}\\s+issue\\s+(pending|approved|done)\\s+\\d/2 approvals\\s+by ${idOf(tok.signer)}`));
    const waiting = cli(["issue", "--request", id, "--wait", "40", "--out", "cert.pem"], tok.signer);
    expect(byB.code, byB.stderr).toBe(0);
    expect(byB.stdout).toMatch(/1 of 2 approvals/);
    fs.writeFileSync(path.join(work, "c.token"), tok.c + "\n", { mode: 0o600 });
    const byC = await cli(["approve", id, "--token-file", "c.token"]);
    expect(byC.code, byC.stderr).toBe(0);
    expect(byC.stdout).toMatch(/2 of 2 approvals/);
    expect(byC.stdout).toMatch(/Issued certificate [0-9a-f]+ \(.*CN=CLI Signing.*\)/);

    const waited = await waiting;
    expect(waited.code, waited.stderr).toBe(0);
    expect(waited.stderr).toMatch(/Wrote .*cert\.pem/);
    const pem = fs.readFileSync(path.join(work, "cert.pem"), "utf8");
    const [leaf, chain] = pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g)!;
    expect(new x509.X509Certificate(leaf!).subject).toMatch(/CN=CLI Signing/);
    expectCodeSigning(leaf!, chain!, keyPem);

  });

  it("refuses the requester approving its own request, a missing token, a token on the command line; tls-server issues at once", async () => {
    const id = (await submit(codeSigningCsr("Own").csr)).body.id as string;
    fs.writeFileSync(path.join(work, "tls.csr"), makeCsr({ san: "DNS:cli.example.test" }).csr);
    const before = await countCertificates(db());
    const [own, none, given, tls] = await Promise.all([
      cli(["approve", id], tok.requester),
      cli(["approve", id]),
      cli(["approve", id, "--token-value", tok.b]),
      cli(["issue", "--profile", "tls-server", "--csr", "tls.csr", "--validity", "1h"], tok.tls), // no approval: at once
    ]);
    expect(tls.code, tls.stderr).toBe(0);
    const [leaf, chain] = tls.stdout.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g)!;
    expect(verify(t.rootPem, chain!, leaf!).ok).toBe(true);
    expect(own.code).toBe(1);
    expect(own.stderr).toMatch(/another admin must approve/);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/set HSM_CA_TOKEN or pass --token-file/);
    expect(given.code).toBe(2);
    expect(given.stderr).toMatch(/--token-value is not an option/);
    expect((await get(id)).body).toMatchObject({ status: "pending", approvals: [] });
    // Only the tls-server certificate was issued.
    expect(await countCertificates(db())).toBe(before + 1);
  });

  it("never prints a token", () => {
    const everything = cliOutput.join("\n");
    // The secret is everything after "hsmca_<id>_" (base64url, which may itself contain "_").
    for (const token of Object.values(tok)) expect(everything).not.toContain(token.slice(token.indexOf("_", 6) + 1));
  });
});

describe("CA changes", () => {
  const intermediates = async () => (await listCas(db())).filter((c) => c.role === "intermediate");

  it("hsm-ca rotate makes a rotation request; two admins' approvals rotate", async () => {
    const r = await cli(["rotate"], tok.requester);
    expect(r.code, r.stderr).toBe(0);
    const id = /Rotation request ([0-9a-f]{16})/.exec(r.stdout)![1]!;
    expect(r.stdout).toMatch(/retire CN=hsm-ca Issuing CA 1, O=hsm-ca, create CN=hsm-ca Issuing CA 2, O=hsm-ca/);
    expect(r.stdout).toMatch(new RegExp(`hsm-ca approve ${id}`));
    expect(await intermediates()).toHaveLength(1);
    expect((await get(id)).body).toMatchObject({ kind: "rotate", status: "pending", required: 2, requestedBy: idOf(tok.requester) });

    const [own, byB] = await Promise.all([cli(["approve", id], tok.requester), cli(["approve", id], tok.b)]);
    expect(own.code).toBe(1);
    expect(own.stderr).toMatch(/another admin must approve/);
    expect(byB.code, byB.stderr).toBe(0);
    expect(byB.stdout).toMatch(/1 of 2 approvals/);
    expect(await intermediates()).toHaveLength(1);
    const byC = await approve(id, tok.c);
    expect(byC.status, byC.text).toBe(200);
    // The approval is recorded; the rotation runs outside the request.
    expect(byC.body).toMatchObject({ status: "approved", approvals: [{ decision: "approve" }, { decision: "approve" }] });
    expect((await outcomeOf(id)).body).toMatchObject({ status: "done", result: { subject: "CN=hsm-ca Issuing CA 2, O=hsm-ca" } });
    const cas = await intermediates();
    expect(cas.map((c) => [c.subject, c.status])).toEqual([
      ["CN=hsm-ca Issuing CA 1, O=hsm-ca", "retired"],
      ["CN=hsm-ca Issuing CA 2, O=hsm-ca", "active"],
    ]);
    // The service notices the rotation done through REST and issues from the new intermediate.
    await waitFor("/ca/chain.pem serves the new intermediate", async () => (await (await fetch(`${t.service.httpUrl}/ca/chain.pem`)).text()) === cas[1]!.certificatePem);
  });

  it("asks once per CA to destroy a retired key, and destroys nothing still needed", async () => {
    const retired = (await intermediates()).find((c) => c.status === "retired")!;
    const deps = { db: db(), hsm: t.service.hsm, log: createLogger("silent"), approvals: { required: 2, ttlMs: 3_600_000 } };
    // Pretend the clean-up runs after every certificate of the retired CA has expired: with the gate it only asks.
    const later = () => new Date(Date.now() + 400 * 86_400_000);
    expect(await destroyRetiredKeys({ ...deps, now: later })).toEqual([]);
    expect(await destroyRetiredKeys({ ...deps, now: later })).toEqual([]);
    const asks = await listApprovalRequests(db(), { kind: "destroy-key", limit: 10 });
    expect(asks).toHaveLength(1);
    expect(asks[0]).toMatchObject({ status: "pending", requestedBy: "system:key-cleanup", payload: { caId: String(retired.id), keyLabel: retired.keyLabel } });
    expect(t.service.hsm.hasKey(retired.keyLabel)).toBe(true);

    // Approved now, for real: its certificates are still valid, so the key stays and the request fails.
    expect((await approve(asks[0]!.id, tok.b)).body.status).toBe("pending");
    expect((await approve(asks[0]!.id, tok.c)).body.status).toBe("approved");
    const done = await outcomeOf(asks[0]!.id);
    expect(done.body).toMatchObject({ status: "failed", result: { error: "refused" } });
    expect(done.body.result.detail).toMatch(/stays: its last certificate is valid until/);
    expect(t.service.hsm.hasKey(retired.keyLabel)).toBe(true);
  });
});

describe("a second service on PostgreSQL, HSM_CA_APPROVAL_TTL=2s", () => {
  // A second service on PostgreSQL, sharing the first one's HSM token (one SoftHSM2 configuration per
  // process), whose CLI opens that database itself with its own environment: the TTL comes from there.
  let p: Service | undefined;
  let pg: Awaited<ReturnType<typeof createTestDatabase>> | undefined;
  let env: Record<string, string>;
  afterAll(async () => {
    await p?.close();
    await pg?.drop();
  });

  it("an expired request cannot be approved, and says it expired", async () => {
    pg = await createTestDatabase();
    env = { ...t.env, DATABASE_URL: pg.url, HSM_CA_APPROVAL_TTL: "2s" };
    p = await startService(loadConfig(env), createLogger("silent"));
    const rootPem = await (await fetch(`${p.httpUrl}/ca/root.pem`)).text();
    const api = apiClient(p.httpsUrl, rootPem);
    const signer = (await createApiToken(p.ctx.store.db, { role: "issuer", profiles: ["code-signing"] })).secret;
    const admin = (await createApiToken(p.ctx.store.db, { role: "admin" })).secret;
    fs.writeFileSync(path.join(work, "late.csr"), codeSigningCsr("Late").csr);
    const submitted = await cli(["issue", "--profile", "code-signing", "--csr", "late.csr"], signer, work, {}, env);
    expect(submitted.code, submitted.stderr).toBe(3);
    const [, id, expires] = /^request ([0-9a-f]{16}) pending: 0 of 2 approvals, expires (\S+)/.exec(submitted.stdout)!;
    expect(Date.parse(expires!) - Date.now()).toBeLessThan(2_000);
    const before = await countCertificates(p.ctx.store.db);
    // Waits for the clock, not for the service: the request's own expiry time.
    await new Promise((res) => setTimeout(res, Math.max(0, Date.parse(expires!) - Date.now() + 100)));
    const late = await api("POST", `/api/v1/requests/${id}/approve`, { token: admin });
    expect(late.status).toBe(409);
    expect(late.body.detail).toMatch(/expired at/);
    expect((await api("GET", `/api/v1/requests/${id}`, { token: signer })).body).toMatchObject({ status: "expired", approvals: [] });
    expect(await countCertificates(p.ctx.store.db)).toBe(before);
  });

  it("issues once when approvals race on PostgreSQL's connection pool", async () => {
    const db2 = p!.ctx.store.db;
    const api = apiClient(p!.httpsUrl, await (await fetch(`${p!.httpUrl}/ca/root.pem`)).text());
    const admins = await Promise.all([0, 1, 2].map(async () => (await createApiToken(db2, { role: "admin" })).secret));
    // Made directly with a TTL of its own: this service's 2 s would be too short to race reliably.
    const { request } = await createApprovalRequest(
      { db: db2, now: () => new Date() },
      { kind: "issue", payload: { csr: codeSigningCsr("Pool").csr, profile: "code-signing" }, requestedBy: "someone", required: 2, ttlMs: 60_000 },
    );
    const before = await countCertificates(db2);
    const answers = await Promise.all(admins.map((token) => api("POST", `/api/v1/requests/${request.id}/approve`, { token })));
    expect(answers.map((a) => a.status).sort()).toEqual([200, 200, 409]);
    expect(answers.filter((a) => a.body.status === "done")).toHaveLength(1);
    expect(await countCertificates(db2)).toBe(before + 1);
  });
});
