import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listCas } from "../src/store/cas.ts";
import { runCliInProcess } from "./helpers/cli.ts";
import { waitFor } from "./helpers/wait.ts";
import { makeCsr, verify } from "./helpers/openssl.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

/**
 * `hsm-ca rotate` on a running CA (embedded PGlite: the CLI goes through the
 * control socket) while clients keep issuing: no request fails, and every
 * response's chain names the intermediate that signed it.
 */
let t: TestService;
let admin: string;

beforeAll(async () => {
  // HSM_CA_CA_CHANGE_APPROVALS=0: no M-of-N gate, so `hsm-ca rotate` rotates at once and this
  // file keeps testing rotation itself (the gate is tested in test/approvals.test.ts).
  t = await startTestService("pglite", { HSM_CA_ROTATION_REMAINING: "10%", HSM_CA_CA_CHANGE_APPROVALS: "0" });
  admin = await t.token("admin");
});
afterAll(async () => {
  await t?.stop();
});

describe("hsm-ca rotate", () => {
  it("--dry-run says what would happen and changes nothing", async () => {
    const r = await runCliInProcess(["rotate", "--dry-run"], t.env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/retire\s+CN=hsm-ca Issuing CA 1/);
    expect(r.stdout).toMatch(/create\s+CN=hsm-ca Issuing CA 2/);
    expect(r.stdout).toMatch(/root key available/);
    expect((await listCas(t.service.ctx.store.db)).filter((c) => c.role === "intermediate")).toHaveLength(1);
  });

  it("status shows when the next rotation is due", async () => {
    const r = await runCliInProcess(["status"], t.env);
    expect(r.stdout).toMatch(/next rotation \d{4}-\d\d-\d\dT[\d:.]+Z \(when 10% of its life remains\)/);
  });

  it("switches issuance to a new intermediate with no failed request in a concurrent issuance loop", async () => {
    const csrs = Array.from({ length: 4 }, (_, i) => makeCsr({ subject: `/CN=loop${i}.example.test`, san: `DNS:loop${i}.example.test` }).csr);
    const results: Array<{ status: number; certificate?: string; chain?: string }> = [];
    let stop = false;
    const worker = async (i: number) => {
      while (!stop) {
        const res = await t.api("POST", "/api/v1/certificates", { token: admin, json: { csr: csrs[i % csrs.length], profile: "tls-server", validity: "1h" } });
        results.push({ status: res.status, certificate: res.body?.certificate, chain: res.body?.chain });
      }
    };
    const workers = Array.from({ length: 6 }, (_, i) => worker(i));
    const issuerOf = (r: (typeof results)[number]) => (r.certificate ? new x509.X509Certificate(r.certificate).issuerName.getField("CN")[0] : undefined);
    let rotated: Awaited<ReturnType<typeof runCliInProcess>>;
    try {
      // The loop is issuing when the rotation starts, and goes on issuing after it, from the new intermediate.
      await waitFor("10 certificates issued before the rotation", () => results.length >= 10, { timeoutMs: 30_000 });
      rotated = await runCliInProcess(["rotate"], t.env);
      const after = results.length;
      await waitFor("10 certificates from Issuing CA 2 after the rotation", () => results.slice(after).filter((r) => issuerOf(r) === "hsm-ca Issuing CA 2").length >= 10, { timeoutMs: 30_000 });
    } finally {
      stop = true;
      await Promise.all(workers);
    }

    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stdout).toMatch(/Key ceremony: rotate/);
    expect(rotated.stdout).toMatch(/INTERMEDIATE CA\s+CN=hsm-ca Issuing CA 2/);
    expect(results.length).toBeGreaterThan(20);
    expect(results.filter((r) => r.status !== 201)).toEqual([]);
    const issuers = new Set(results.map((r) => new x509.X509Certificate(r.certificate!).issuerName.getField("CN")[0]));
    expect(issuers).toEqual(new Set(["hsm-ca Issuing CA 1", "hsm-ca Issuing CA 2"]));
    for (const r of [results[0]!, results.at(-1)!]) expect(verify(t.rootPem, r.chain!, r.certificate!).ok).toBe(true);
    for (const r of results) {
      expect(new x509.X509Certificate(r.chain!).subject).toBe(new x509.X509Certificate(r.certificate!).issuer);
    }
    const chainNow = await (await fetch(`${t.service.httpUrl}/ca/chain.pem`)).text();
    expect(new x509.X509Certificate(chainNow).subjectName.getField("CN")[0]).toBe("hsm-ca Issuing CA 2");
  });
});
