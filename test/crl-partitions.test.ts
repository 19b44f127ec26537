import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeCsr } from "./helpers/openssl.ts";
import { fetchBytes, RelyingParty, within } from "./helpers/relying-party.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

/**
 * Partitioned CRLs (HSM_CA_CRL_PARTITIONS) on PGlite, with OCSP signed by
 * the CA key itself (HSM_CA_OCSP_SIGNER=ca): each certificate's CRL DP names
 * its partition, and that partition's CRL carries an Issuing Distribution
 * Point that matches it exactly, so openssl accepts it.
 */
let t: TestService;
let rp: RelyingParty;
let admin: string;

const crlUrlOf = (pem: string) => /URI:(\S+)/.exec(execFileSync("openssl", ["x509", "-noout", "-ext", "crlDistributionPoints"], { input: pem, encoding: "utf8" }))![1]!;

beforeAll(async () => {
  t = await startTestService("pglite", { HSM_CA_CRL_PARTITIONS: "4", HSM_CA_OCSP_SIGNER: "ca" });
  rp = new RelyingParty();
  admin = await t.token("admin");
});
afterAll(async () => {
  await t?.stop();
  rp?.cleanup();
});

async function issue(i: number) {
  const name = `part${i}.example.test`;
  const res = await t.api("POST", "/api/v1/certificates", { token: admin, json: { csr: makeCsr({ subject: `/CN=${name}`, san: `DNS:${name}` }).csr, profile: "tls-server" } });
  expect(res.status).toBe(201);
  return res.body as { serial: string; certificate: string; chain: string };
}

describe("partitioned CRLs", () => {
  it("spread certificates over partitions, each CRL scoped by an IDP equal to the CRL DP", async () => {
    const certs = await Promise.all(Array.from({ length: 12 }, (_, i) => issue(i)));
    const urls = new Set(certs.map((c) => crlUrlOf(c.certificate)));
    expect(urls.size).toBeGreaterThan(1);
    for (const url of urls) expect(url).toMatch(/\/crl\/\d+-p[0-3]\.crl$/);

    const victim = certs[0]!;
    const bystander = certs.find((c) => crlUrlOf(c.certificate) === crlUrlOf(victim.certificate) && c !== victim);
    const elsewhere = certs.find((c) => crlUrlOf(c.certificate) !== crlUrlOf(victim.certificate))!;
    const res = await t.api("POST", `/api/v1/certificates/${victim.serial}/revoke`, { token: admin, json: { reason: "superseded" } });
    expect(res.status).toBe(200);

    const partitionUrl = crlUrlOf(victim.certificate);
    await within(5_000, async () => (await rp.crlText((await fetchBytes(partitionUrl)).body)).includes(victim.serial.toUpperCase()));
    const text = await rp.crlText((await fetchBytes(partitionUrl)).body);
    expect(text).toMatch(new RegExp(`Issuing Distribution Point: critical\\s+Full Name:\\s+URI:${partitionUrl.replace(/[.]/g, "\\.")}`));
    const crl = await rp.crlPem((await fetchBytes(partitionUrl)).body, "partition.pem");

    const revoked = await rp.verify(t.rootPem, victim.chain, victim.certificate, [crl]);
    expect(revoked.out).toMatch(/certificate revoked/);
    if (bystander) expect((await rp.verify(t.rootPem, bystander.chain, bystander.certificate, [crl])).ok).toBe(true);
    // Another partition's CRL is out of scope for this certificate: openssl refuses to use it.
    const otherCrl = await rp.crlPem((await fetchBytes(crlUrlOf(elsewhere.certificate))).body, "other.pem");
    const wrongScope = await rp.verify(t.rootPem, victim.chain, victim.certificate, [otherCrl]);
    expect(wrongScope.ok).toBe(false);
    expect(wrongScope.out).toMatch(/different CRL scope|unable to get certificate CRL/);
    // The other partitions do not list it.
    expect(await rp.crlText((await fetchBytes(crlUrlOf(elsewhere.certificate))).body)).not.toContain(victim.serial.toUpperCase());
  });

  it("OCSP responses are signed by the CA key itself when configured", async () => {
    const c = await issue(99);
    const r = await rp.ocsp(`${t.service.httpUrl}/ocsp`, c.chain, t.rootPem, { certPem: c.certificate }, ["-VAfile", rp.file("va.pem", c.chain)]);
    expect(r.out).toMatch(/Response verify OK/);
    expect(r.out).toMatch(/cert\.pem: good/);
    expect(r.out).not.toMatch(/OCSP Signing/); // no delegated responder certificate in the response
  });
});
