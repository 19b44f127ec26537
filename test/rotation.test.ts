import { execFileSync } from "node:child_process";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { destroyRetiredKeys } from "../src/jobs/key-cleanup.ts";
import { loadConfig } from "../src/config.ts";
import { createLogger } from "../src/logger.ts";
import { startService, type Service } from "../src/service.ts";
import { eq } from "drizzle-orm";
import { requestsByPayloadField } from "../src/store/approvals.ts";
import { listCas } from "../src/store/cas.ts";
import { approvalRequests, cas } from "../src/store/schema.ts";
import { listCeremonies } from "../src/store/ceremonies.ts";
import { makeCsr, verify } from "./helpers/openssl.ts";
import { fetchBytes, RelyingParty, within } from "./helpers/relying-party.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

/**
 * Rotation with a schedule of a few seconds: two replicas on one PostgreSQL
 * database and one HSM token rotate once per tick, both switch to the new
 * intermediate, and certificates from before keep their CRL and OCSP
 * answers from the retired one.
 */
const SCHEDULE = "*/3 * * * * *";
let a: TestService;
let b: Service;
let rp: RelyingParty;
let admin: string;

beforeAll(async () => {
  // HSM_CA_CA_CHANGE_APPROVALS=0 (and approvals: { required: 0 } for destroyRetiredKeys below): no
  // M-of-N gate, so this file keeps testing rotation and key destruction themselves (the gate is
  // tested in test/approvals.test.ts). Scheduled rotation is never gated.
  a = await startTestService("postgres", { HSM_CA_ROTATION_SCHEDULE: SCHEDULE, HSM_CA_CA_CHANGE_APPROVALS: "0" });
  // Replicas publish under one public URL (behind one name in production).
  b = await startService(
    loadConfig({ ...a.env, HSM_CA_HTTPS_PORT: "0", HSM_CA_HTTP_PORT: "0", HSM_CA_PUBLIC_HTTP_URL: a.service.httpUrl }),
    createLogger("silent"),
  );
  rp = new RelyingParty();
  admin = await a.token("admin");
});
afterAll(async () => {
  await b?.close();
  await a?.stop();
  rp?.cleanup();
});

const intermediates = async () => (await listCas(a.service.ctx.store.db)).filter((c) => c.role === "intermediate");
const issue = async (name: string) => {
  const res = await a.api("POST", "/api/v1/certificates", { token: admin, json: { csr: makeCsr({ subject: `/CN=${name}`, san: `DNS:${name}` }).csr, profile: "tls-server", validity: "1h" } });
  expect(res.status, res.text).toBe(201);
  return res.body as { serial: string; certificate: string; chain: string };
};
const issuerCn = (pem: string) => new x509.X509Certificate(pem).issuerName.getField("CN")[0];
const ocspUrlOf = (pem: string) => /OCSP - URI:(\S+)/.exec(execFileSync("openssl", ["x509", "-noout", "-ext", "authorityInfoAccess"], { input: pem, encoding: "utf8" }))![1]!;
const crlUrlOf = (pem: string) => /URI:(\S+)/.exec(execFileSync("openssl", ["x509", "-noout", "-ext", "crlDistributionPoints"], { input: pem, encoding: "utf8" }))![1]!;

describe("scheduled rotation on two replicas", () => {
  let before: { serial: string; certificate: string; chain: string };

  it("rotates once per tick, not once per replica", async () => {
    before = await issue("before.example.test");
    const atStart = (await intermediates()).length;
    await within(15_000, async () => (await intermediates()).length >= atStart + 2);
    const cas = await intermediates();
    const ticks = (await listCeremonies(a.service.ctx.store.db)).filter((c) => c.kind === "rotate");
    expect(ticks.length).toBe(cas.length - 1);
    const whys = ticks.map((t) => (t.transcript as { why: string }).why);
    expect(new Set(whys).size).toBe(whys.length); // each tick rotated once
    expect(cas.filter((c) => c.status === "active")).toHaveLength(1);
    expect(cas.map((c) => c.subject)).toEqual(expect.arrayContaining(["CN=hsm-ca Issuing CA 1, O=hsm-ca", "CN=hsm-ca Issuing CA 2, O=hsm-ca", "CN=hsm-ca Issuing CA 3, O=hsm-ca"]));
    // The certificate from before was issued by an intermediate that is retired now.
    expect(cas.find((c) => c.subject.includes(issuerCn(before.certificate)!))?.status).toBe("retired");
  });

  it("issues from the newest intermediate on both replicas, naming it in every chain", async () => {
    const fresh = await issue("after.example.test");
    const freshCn = issuerCn(fresh.certificate)!;
    const chainCn = new x509.X509Certificate(fresh.chain).subjectName.getField("CN")[0];
    expect(chainCn).toBe(freshCn);
    expect(verify(a.rootPem, fresh.chain, fresh.certificate).ok).toBe(true);
    expect(freshCn).not.toBe("hsm-ca Issuing CA 1");
    // Replica B switched without a restart: its chain.pem is an active intermediate too.
    await within(5_000, async () => {
      const chainB = await (await fetch(`${b.httpUrl}/ca/chain.pem`)).text();
      const current = (await intermediates()).find((c) => c.status === "active")!;
      return chainB === current.certificatePem;
    });
  });

  it("keeps answering OCSP and CRLs for certificates of the retired intermediate", async () => {
    const good = await rp.ocsp(ocspUrlOf(before.certificate), before.chain, a.rootPem, { certPem: before.certificate });
    expect(good.out).toMatch(/Response verify OK/);
    expect(good.out).toMatch(/cert\.pem: good/);
    const res = await a.api("POST", `/api/v1/certificates/${before.serial}/revoke`, { token: admin, json: { reason: "superseded" } });
    expect(res.status).toBe(200);
    await within(5_000, async () => /cert\.pem: revoked/.test((await rp.ocsp(ocspUrlOf(before.certificate), before.chain, a.rootPem, { certPem: before.certificate })).out));
    await within(5_000, async () => (await rp.crlText((await fetchBytes(crlUrlOf(before.certificate))).body)).includes(before.serial.toUpperCase()));
    const crl = await rp.crlPem((await fetchBytes(crlUrlOf(before.certificate))).body, "old.pem");
    expect((await rp.openssl(["crl", "-in", crl, "-CAfile", rp.file("ca1.pem", before.chain), "-noout"])).out).toMatch(/verify OK/);
    expect((await rp.verify(a.rootPem, before.chain, before.certificate, [crl])).out).toMatch(/certificate revoked/);
  });
});

describe("retired keys", () => {
  it("are destroyed only after the last certificate they signed has expired, and the destruction is recorded", async () => {
    const deps = { db: a.service.ctx.store.db, hsm: a.service.hsm, log: createLogger("silent"), approvals: { required: 0 } };
    const first = (await intermediates()).find((c) => c.subject.includes("Issuing CA 1"))!;
    expect(a.service.hsm.hasKey(first.keyLabel)).toBe(true);
    // Now: CA 1 still has unexpired certificates (1 h leaves, and the replicas' 30-day HTTPS certificates).
    expect((await destroyRetiredKeys({ ...deps, now: () => new Date() })).map((c) => c.id)).not.toContain(first.id);
    expect(a.service.hsm.hasKey(first.keyLabel)).toBe(true);
    expect((await destroyRetiredKeys({ ...deps, now: () => new Date(Date.now() + 2 * 3_600_000) })).map((c) => c.id)).not.toContain(first.id);
    // 31 days on, every certificate of CA 1 has expired. Had its key been adopted from a vendor
    // ceremony, it would wait for an admin's approval even with approvals set to 0.
    const db = a.service.ctx.store.db;
    await db.update(cas).set({ keyOrigin: "adopted" }).where(eq(cas.id, first.id));
    expect(await destroyRetiredKeys({ ...deps, now: () => new Date(Date.now() + 31 * 86_400_000) })).toEqual([]);
    expect(a.service.hsm.hasKey(first.keyLabel)).toBe(true);
    const asked = await requestsByPayloadField(db, "destroy-key", "caId", String(first.id), ["pending"]);
    expect(asked.map((r) => r.required)).toEqual([1]);
    await db.delete(approvalRequests).where(eq(approvalRequests.id, asked[0]!.id));
    await db.update(cas).set({ keyOrigin: "generated" }).where(eq(cas.id, first.id));
    // A key hsm-ca made itself goes at once with approvals set to 0.
    const destroyed = await destroyRetiredKeys({ ...deps, now: () => new Date(Date.now() + 31 * 86_400_000) });
    expect(destroyed.map((c) => c.id)).toContain(first.id);
    expect(a.service.hsm.hasKey(first.keyLabel)).toBe(false);
    const active = (await intermediates()).find((c) => c.status === "active")!;
    expect(a.service.hsm.hasKey(active.keyLabel)).toBe(true); // never the active one
    const records = (await listCeremonies(a.service.ctx.store.db)).filter((c) => c.kind === "destroy-key");
    expect(records.map((r) => JSON.stringify(r.transcript)).join("\n")).toContain(first.keyLabel);
  });
});
