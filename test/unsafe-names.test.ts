import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import * as x509 from "@peculiar/x509";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROBLEM_TYPE_PREFIX } from "../src/api/problem.ts";
import { auditEntriesPage } from "../src/store/audit.ts";
import { certificateBySerial, countCertificates } from "../src/store/certificates.ts";
import { runCliInProcess } from "./helpers/cli.ts";
import { makeCsr, tempDir } from "./helpers/openssl.ts";
import { parsePrometheusText } from "./helpers/prometheus.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

/**
 * Names PostgreSQL cannot store (a NUL in a CN, an OU, an email SAN) used
 * to reach the HSM and fail only when the signed certificate was stored:
 * a 500, and an audit log saying the signature went fine. Here, on the
 * real service and PostgreSQL: such names are refused before anything is
 * signed, at every door; and when storing does fail after a signature,
 * the audit log says the signed certificate was not issued.
 */
const METRICS_TOKEN = "scrape-me-0123456789abcdef";

let t: TestService;
let issuer: string;
let admin: string;
let intermediateLabel: string;
const work = tempDir("hsmca-unsafe-names-");

/** "token:<id>": the actor the HSM's key-use entries name for requests made with this token. */
const actorOf = (token: string) => `token:${token.split("_")[1]}`;

beforeAll(async () => {
  t = await startTestService("postgres", { HSM_CA_METRICS_TOKEN: METRICS_TOKEN });
  [issuer, admin] = await Promise.all([t.token("issuer", "tls-server", "tls-client"), t.token("admin")]);
  const cas = await t.api("GET", "/api/v1/cas", { token: admin });
  intermediateLabel = cas.body.items.find((c: any) => c.role === "intermediate" && c.status === "active").keyLabel;
});
afterAll(async () => {
  await t?.stop();
  fs.rmSync(work, { recursive: true, force: true });
});

/** A CSR signed by a fresh software key, with names written by @peculiar/x509 (openssl's -subj cannot write a NUL). */
async function x509Csr(name: x509.JsonName, sans: x509.JsonGeneralName[] = []): Promise<string> {
  const keys = (await crypto.webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name,
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    extensions: sans.length ? [new x509.SubjectAlternativeNameExtension(sans)] : [],
  });
  return csr.toString("pem");
}

/** Every audit entry, once what the service holds in memory is written. */
async function auditEntries() {
  await t.service.ctx.audit!.flush();
  return auditEntriesPage(t.service.ctx.store.db, { afterSeq: 0, limit: 100_000 });
}

/** What an operator sees: signatures by the issuing key (Prometheus), key uses by this token and not-issued entries (audit log), stored certificates. */
async function snapshot(token: string) {
  const res = await fetch(`${t.service.httpUrl}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
  const metrics = parsePrometheusText(await res.text());
  const entries = await auditEntries();
  return {
    signs: metrics.value("hsmca_hsm_operation_duration_seconds_count", { key_label: intermediateLabel, operation: "sign" }),
    signsByToken: entries.filter((e) => e.kind === "hsm.sign" && e.actor === actorOf(token)).length,
    notIssued: entries.filter((e) => e.kind === "certificate.not-issued").length,
    stored: await countCertificates(t.service.ctx.store.db),
  };
}

describe("names with a NUL, control or bidi character: 400 before the HSM signs", () => {
  const cases: Array<[string, string, () => Promise<string>, string, RegExp]> = [
    [
      "a NUL in the CN (tls-client takes the CN from the CSR)",
      "tls-client",
      () => x509Csr([{ CN: ["alice\u0000.example.com"] }]),
      "bad-subject",
      /^the CSR's subject CN "alice\\u0000\.example\.com" contains a NUL character \(U\+0000\)$/,
    ],
    [
      "a NUL in the OU (tls-server copies it)",
      "tls-server",
      () => x509Csr([{ OU: ["Ops\u0000"] }, { CN: ["app.example.test"] }], [{ type: "dns", value: "app.example.test" }]),
      "bad-subject",
      /^the CSR's subject OU "Ops\\u0000" contains a NUL character/,
    ],
    [
      "a NUL in an rfc822Name SAN of an allowed domain",
      "tls-client",
      () => x509Csr([{ CN: ["alice"] }], [{ type: "email", value: "alice\u0000@example.com" }]),
      "rejected-identifier",
      /^the CSR's email address \(rfc822Name\) SAN "alice\\u0000@example\.com" contains a NUL character/,
    ],
    [
      "a right-to-left override in the CN",
      "tls-client",
      () => x509Csr([{ CN: ["invoice\u202efdp.exe"] }]),
      "bad-subject",
      /subject CN "invoice\\u202efdp\.exe" contains a bidirectional override or isolate character \(U\+202E\)/,
    ],
  ];

  for (const [name, profile, csr, kind, detail] of cases) {
    it(`REST: ${name} -> ${kind}, nothing signed, nothing stored`, async () => {
      const before = await snapshot(issuer);
      const res = await t.api("POST", "/api/v1/certificates", { token: issuer, json: { csr: await csr(), profile } });
      expect(res.status).toBe(400);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
      expect(res.body).toMatchObject({ type: PROBLEM_TYPE_PREFIX + kind, status: 400 });
      expect(res.body.detail).toMatch(detail);
      expect(await snapshot(issuer)).toEqual(before);
    });
  }

  it("CLI issue: a NUL in the CN -> a one-line message naming the CN, non-zero exit, nothing signed or stored", async () => {
    const file = path.join(work, "nul-cn.csr");
    fs.writeFileSync(file, await x509Csr([{ CN: ["alice\u0000.example.com"] }]));
    const before = await snapshot(issuer);
    const r = await runCliInProcess(["issue", "--profile", "tls-client", "--csr", file], { ...t.env, HSM_CA_TOKEN: issuer });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/subject CN "alice\\u0000\.example\.com" contains a NUL character/);
    expect(await snapshot(issuer)).toEqual(before);
  });

  it("approvals: a NUL in the CN of a code-signing request -> 400 at once, no request waits for approval", async () => {
    const before = await snapshot(admin);
    const res = await t.api("POST", "/api/v1/certificates", { token: admin, json: { csr: await x509Csr([{ CN: ["Release\u0000Signing"] }]), profile: "code-signing" } });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ type: PROBLEM_TYPE_PREFIX + "bad-subject", detail: expect.stringContaining("NUL character") });
    const waiting = await t.api("GET", "/api/v1/requests", { token: admin });
    expect(waiting.status).toBe(200);
    expect(waiting.body.items).toEqual([]);
    expect(await snapshot(admin)).toEqual(before);
  });
});

describe("policy over REST", () => {
  it("a single-label DNS name (test) -> 400 rejected-identifier, nothing signed", async () => {
    const before = await snapshot(issuer);
    const res = await t.api("POST", "/api/v1/certificates", { token: issuer, json: { csr: makeCsr({ subject: "/", san: "DNS:test" }).csr, profile: "tls-server" } });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ type: PROBLEM_TYPE_PREFIX + "rejected-identifier", detail: expect.stringContaining('DNS name "test" is a single label') });
    expect(await snapshot(issuer)).toEqual(before);
  });

  it("an IPv4-mapped IPv6 address -> 400 rejected-identifier; never a certificate with CN ::ffff:a00:1", async () => {
    const res = await t.api("POST", "/api/v1/certificates", { token: issuer, json: { csr: makeCsr({ subject: "/", san: "IP:::ffff:10.0.0.1" }).csr, profile: "tls-server" } });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ type: PROBLEM_TYPE_PREFIX + "rejected-identifier", detail: expect.stringContaining("IPv4-mapped IPv6 address (of 10.0.0.1)") });
  });
});

describe("a failure after the HSM signed: the audit log says the certificate was not issued", () => {
  it("a store that refuses the row -> 5xx, hsm.sign ok and certificate.not-issued with serial, fingerprint and reason; nothing stored", async () => {
    // The database of this test file only: rows naming refuse-me cannot be stored.
    const sql = postgres(t.env.DATABASE_URL!, { max: 1, onnotice: () => {} });
    await sql.unsafe(`alter table certificates add constraint test_refuses_refuse_me check (subject not like '%refuse-me%')`);
    try {
      const before = await snapshot(issuer);
      const res = await t.api("POST", "/api/v1/certificates", { token: issuer, json: { csr: makeCsr({ subject: "/", san: "DNS:refuse-me.example.test" }).csr, profile: "tls-server" } });
      expect(res.status).toBeGreaterThanOrEqual(500);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);

      const after = await snapshot(issuer);
      expect(after.signsByToken).toBe(before.signsByToken + 1);
      expect(after.stored).toBe(before.stored);
      const entries = await auditEntries();
      const notIssued = entries.filter((e) => e.kind === "certificate.not-issued");
      expect(notIssued).toHaveLength(before.notIssued + 1);
      const entry = notIssued.at(-1)!;
      expect(entry).toMatchObject({ actor: actorOf(issuer), result: "error" });
      const details = entry.details as Record<string, unknown>;
      expect(details).toMatchObject({
        serial: entry.subject,
        profile: "tls-server",
        fingerprint_sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
        reason: expect.stringMatching(/^the signed certificate could not be stored: .*test_refuses_refuse_me/),
        retried_with_new_serial: false,
      });
      expect(entry.subject).toMatch(/^[0-9a-f]+$/);
      // The signature it speaks of is the key use just before it, by the same requester.
      const sign = entries.filter((e) => e.kind === "hsm.sign" && e.actor === actorOf(issuer)).at(-1)!;
      expect(sign).toMatchObject({ result: "ok", subject: intermediateLabel });
      expect(sign.seq).toBeLessThan(entry.seq);
      expect(await certificateBySerial(t.service.ctx.store.db, entry.subject!)).toBeUndefined();
    } finally {
      await sql.unsafe(`alter table certificates drop constraint test_refuses_refuse_me`);
      await sql.end();
    }
  });

  it("with the store working again, the same request is issued (and no not-issued entry is added)", async () => {
    const before = await snapshot(issuer);
    const res = await t.api("POST", "/api/v1/certificates", { token: issuer, json: { csr: makeCsr({ subject: "/", san: "DNS:refuse-me.example.test" }).csr, profile: "tls-server" } });
    expect(res.status).toBe(201);
    const after = await snapshot(issuer);
    expect(after.stored).toBe(before.stored + 1);
    expect(after.notIssued).toBe(before.notIssued);
  });
});
