import { execFileSync } from "node:child_process";
import fs from "node:fs";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROBLEM_TYPE_PREFIX } from "../src/api/problem.ts";
import { loadConfig } from "../src/config.ts";
import { createLogger } from "../src/logger.ts";
import { startService, type Service } from "../src/service.ts";
import { runCli, runCliInProcess } from "./helpers/cli.ts";
import { makeCsr, makeKey } from "./helpers/openssl.ts";
import { fetchBytes, RelyingParty, within } from "./helpers/relying-party.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

/**
 * Revocation as a relying party sees it, with openssl: OCSP answers and CRLs
 * from the URLs in the certificates, within 5 seconds of a revocation made
 * through REST or the CLI.
 */
let t: TestService;
let rp: RelyingParty;
let admin: string;
let auditor: string;

interface Issued {
  serial: string;
  certificate: string;
  chain: string;
}

async function issue(name: string, keyPem?: string): Promise<Issued> {
  const { csr } = makeCsr({ subject: `/CN=${name}`, san: `DNS:${name}`, keyPem });
  const res = await t.api("POST", "/api/v1/certificates", { token: admin, json: { csr, profile: "tls-server", validity: "24h" } });
  expect(res.status, res.text).toBe(201);
  return res.body;
}

/** The URLs as a relying party reads them from the certificate. */
const extensionText = (pem: string, ext: string) => execFileSync("openssl", ["x509", "-noout", "-ext", ext], { input: pem, encoding: "utf8" });
const ocspUrlOf = (pem: string) => /OCSP - URI:(\S+)/.exec(extensionText(pem, "authorityInfoAccess"))![1]!;
const crlUrlOf = (pem: string) => /URI:(\S+)/.exec(extensionText(pem, "crlDistributionPoints"))![1]!;

beforeAll(async () => {
  t = await startTestService("postgres");
  rp = new RelyingParty();
  admin = await t.token("admin");
  auditor = await t.token("auditor");
});
afterAll(async () => {
  await t?.stop();
  rp?.cleanup();
});

describe("certificates point at revocation data", () => {
  it("carry a CRL Distribution Point and OCSP and caIssuers URLs on the plain-HTTP listener", async () => {
    const c = await issue("points.example.test");
    expect(crlUrlOf(c.certificate)).toBe(`${t.service.httpUrl}/crl/${t.service.ctx.issuer().row.id}.crl`);
    expect(ocspUrlOf(c.certificate)).toBe(`${t.service.httpUrl}/ocsp`);
    const caIssuers = /CA Issuers - URI:(\S+)/.exec(extensionText(c.certificate, "authorityInfoAccess"))![1]!;
    const issuerDer = await fetchBytes(caIssuers);
    expect(issuerDer.headers.get("content-type")).toBe("application/pkix-cert");
    expect(new x509.X509Certificate(Buffer.from(issuerDer.body)).toString("pem").trim()).toBe(c.chain.trim());
    // The intermediate points at the root's CRL.
    expect(crlUrlOf(t.chainPem)).toBe(`${t.service.httpUrl}/crl/${t.service.ctx.issuer().root.id}.crl`);
  });
});

describe("revoking through REST", () => {
  let revoked: Issued;
  let live: Issued;
  let keyPem: string;

  beforeAll(async () => {
    keyPem = makeKey("ec-p256");
    revoked = await issue("gone.example.test", keyPem);
    live = await issue("live.example.test");
  });

  it("OCSP says good before the revocation", async () => {
    const r = await rp.ocsp(ocspUrlOf(revoked.certificate), revoked.chain, t.rootPem, { certPem: revoked.certificate });
    expect(r.out).toMatch(/Response verify OK/);
    expect(r.out).toMatch(/cert\.pem: good/);
  });

  it("revokes with a reason and an invalidity date, and then OCSP and a fresh CRL show it within 5 seconds", async () => {
    const invalidity = new Date(Date.now() - 3_600_000);
    const res = await t.api("POST", `/api/v1/certificates/${revoked.serial}/revoke`, {
      token: admin,
      json: { reason: "keyCompromise", invalidityDate: invalidity.toISOString() },
    });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ status: "revoked", revocationReason: "keyCompromise", alreadyRevoked: false });
    const at = Date.now();

    let ocspOut = "";
    await within(5_000, async () => {
      ocspOut = (await rp.ocsp(ocspUrlOf(revoked.certificate), revoked.chain, t.rootPem, { certPem: revoked.certificate })).out;
      return /cert\.pem: revoked/.test(ocspOut);
    });
    expect(ocspOut).toMatch(/Response verify OK/);
    expect(ocspOut).toMatch(/Reason: keyCompromise/);

    let crlText = "";
    await within(5_000 - (Date.now() - at), async () => {
      crlText = await rp.crlText((await fetchBytes(crlUrlOf(revoked.certificate))).body);
      return crlText.includes(revoked.serial.toUpperCase());
    });
    expect(crlText).toMatch(/Version 2/);
    expect(crlText).toMatch(/Key Compromise/);
    expect(crlText).toMatch(/Invalidity Date/);
  });

  it("is rejected by openssl verify -crl_check while a live certificate passes, also with -crl_check_all", async () => {
    const crl = await rp.crlPem((await fetchBytes(crlUrlOf(live.certificate))).body, "issuer-crl.pem");
    const rootCrl = await rp.crlPem((await fetchBytes(crlUrlOf(t.chainPem))).body, "root-crl.pem");
    const bad = await rp.verify(t.rootPem, revoked.chain, revoked.certificate, [crl]);
    expect(bad.ok).toBe(false);
    expect(bad.out).toMatch(/certificate revoked/);
    const liveCheck = await rp.verify(t.rootPem, live.chain, live.certificate, [crl]);
    expect(liveCheck.ok, liveCheck.out).toBe(true);
    const liveAll = await rp.verify(t.rootPem, live.chain, live.certificate, [crl, rootCrl], "-crl_check_all");
    expect(liveAll.ok, liveAll.out).toBe(true);
    expect((await rp.verify(t.rootPem, revoked.chain, revoked.certificate, [crl, rootCrl], "-crl_check_all")).ok).toBe(false);
    // The CRL itself verifies against the chain.
    expect((await rp.openssl(["crl", "-in", crl, "-CAfile", rp.file("ca.pem", live.chain), "-noout"])).out).toMatch(/verify OK/);
  });

  it("serves a full CRL with Freshest CRL and a delta CRL that parses and lists the revocation", async () => {
    const full = await fetchBytes(crlUrlOf(live.certificate));
    expect(full.headers.get("content-type")).toBe("application/pkix-crl");
    expect(full.headers.get("etag")).toBeTruthy();
    expect(full.headers.get("last-modified")).toBeTruthy();
    expect(Number(/max-age=(\d+)/.exec(full.headers.get("cache-control")!)![1])).toBeGreaterThan(3600);
    const fullText = await rp.crlText(full.body);
    const deltaUrl = /Freshest CRL:\s*\n\s*Full Name:\s*\n\s*URI:(\S+)/.exec(fullText)![1]!;
    const delta = await rp.crlText((await fetchBytes(deltaUrl)).body);
    expect(delta).toMatch(/Delta CRL Indicator: critical/);
    expect(delta).toContain(revoked.serial.toUpperCase());
    // A second fetch with the ETag is a 304.
    const again = await fetch(crlUrlOf(live.certificate), { headers: { "if-none-match": full.headers.get("etag")! } });
    expect(again.status).toBe(304);
  });

  it("is idempotent: a second revocation changes nothing and says so", async () => {
    const res = await t.api("POST", `/api/v1/certificates/${revoked.serial}/revoke`, { token: admin, json: { reason: "superseded" } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ alreadyRevoked: true, revocationReason: "keyCompromise" });
  });

  it("bars a key revoked for keyCompromise from any new certificate", async () => {
    const { csr } = makeCsr({ subject: "/CN=again.example.test", san: "DNS:again.example.test", keyPem });
    const res = await t.api("POST", "/api/v1/certificates", { token: admin, json: { csr, profile: "tls-server" } });
    expect(res.status).toBe(400);
    expect(res.body.type).toBe(PROBLEM_TYPE_PREFIX + "key-compromised");
  });

  it("refuses a bad reason, an unknown serial and a token without the right", async () => {
    const bad = await t.api("POST", `/api/v1/certificates/${live.serial}/revoke`, { token: admin, json: { reason: "certificateHold" } });
    expect(bad.status).toBe(400);
    expect(bad.body.type).toBe(PROBLEM_TYPE_PREFIX + "bad-revocation-reason");
    const unknown = await t.api("POST", "/api/v1/certificates/0123456789abcdef/revoke", { token: admin, json: { reason: "superseded" } });
    expect(unknown.status).toBe(404);
    const forbidden = await t.api("POST", `/api/v1/certificates/${live.serial}/revoke`, { token: auditor, json: { reason: "superseded" } });
    expect(forbidden.status).toBe(403);
    const none = await t.api("POST", `/api/v1/certificates/${live.serial}/revoke`, { json: { reason: "superseded" } });
    expect(none.status).toBe(401);
    expect((await t.api("GET", `/api/v1/certificates/${live.serial}`, { token: admin })).body.status).toBe("valid");
  });
});

describe("the OCSP responder", () => {
  it("answers unknown, never good, for a serial this CA never issued", async () => {
    const r = await rp.ocsp(`${t.service.httpUrl}/ocsp`, t.chainPem, t.rootPem, { serial: "7eadbeef00112233" });
    expect(r.out).toMatch(/Response verify OK/);
    expect(r.out).toMatch(/: unknown/);
  });

  it("signs with a delegated responder certificate: OCSP Signing, no-check, key in the HSM", async () => {
    const c = await issue("delegated.example.test");
    const r = await rp.ocsp(ocspUrlOf(c.certificate), c.chain, t.rootPem, { certPem: c.certificate });
    expect(r.out).toMatch(/OCSP Signing/);
    expect(r.out).toMatch(/OCSP No Check/);
    expect(r.out).toMatch(/Issuer: CN ?= ?hsm-ca Issuing CA 1/);
    expect(r.out).toMatch(/Response verify OK/);
  });

  it("serves GET requests (base64 in the path) with cache headers from the pre-signed cache", async () => {
    const c = await issue("get.example.test");
    const reqFile = `${rp.dir}/req.der`;
    expect((await rp.openssl(["ocsp", "-issuer", rp.file("i.pem", c.chain), "-cert", rp.file("c.pem", c.certificate), "-no_nonce", "-reqout", reqFile])).ok).toBe(true);
    const b64 = fs.readFileSync(reqFile).toString("base64");
    const res = await fetchBytes(`${t.service.httpUrl}/ocsp/${encodeURIComponent(b64)}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/ocsp-response");
    expect(res.headers.get("cache-control")).toMatch(/max-age=\d+/);
    expect(res.headers.get("etag")).toBeTruthy();
    const text = (await rp.openssl(["ocsp", "-respin", rp.file("resp.der", res.body), "-resp_text", "-noverify"])).out;
    expect(text).toMatch(/Cert Status: good/);
    // The same request again is the same bytes (served from the cache, not signed again).
    const second = await fetchBytes(`${t.service.httpUrl}/ocsp/${encodeURIComponent(b64)}`);
    expect(Buffer.from(second.body).equals(Buffer.from(res.body))).toBe(true);
  });

  it("answers a request with a nonce with a fresh response carrying that nonce", async () => {
    const c = await issue("nonce.example.test");
    const r = await rp.ocsp(ocspUrlOf(c.certificate), c.chain, t.rootPem, { certPem: c.certificate });
    expect(r.out).toMatch(/OCSP Nonce/);
    expect(r.out).not.toMatch(/WARNING: no nonce/);
    expect(r.out).toMatch(/cert\.pem: good/);
  });

  it("answers malformedRequest to garbage and unauthorized for an issuer it does not serve; never HTTP 500", async () => {
    for (const body of [new Uint8Array(0), new Uint8Array([0x30, 0x03, 0x02, 0x01]), crypto.getRandomValues(new Uint8Array(300))]) {
      const res = await fetch(`${t.service.httpUrl}/ocsp`, { method: "POST", body, headers: { "content-type": "application/ocsp-request" } });
      expect(res.status).toBe(200);
      const text = (await rp.openssl(["ocsp", "-respin", rp.file("e.der", new Uint8Array(await res.arrayBuffer())), "-resp_text"])).out;
      expect(text).toMatch(/malformedrequest/i);
    }
    for (const path of ["/ocsp/%%%", "/ocsp/not-base64!", "/ocsp/"]) {
      const res = await fetch(`${t.service.httpUrl}${path}`);
      expect(res.status).toBe(200);
    }
    const otherCa = await rp.openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${rp.dir}/o.key`, "-subj", "/CN=Other CA", "-days", "1", "-out", `${rp.dir}/other.pem`]);
    expect(otherCa.ok).toBe(true);
    const r = await rp.openssl(["ocsp", "-issuer", `${rp.dir}/other.pem`, "-serial", "0x01", "-url", `${t.service.httpUrl}/ocsp`, "-noverify"]);
    expect(r.out).toMatch(/unauthorized/i);
  });
});

describe("background pre-signing", () => {
  it("signs each certificate's response once, then has nothing left to do until they age", async () => {
    const { certificatesNeedingOcsp } = await import("../src/store/ocsp.ts");
    const db = t.service.ctx.store.db;
    const due = () => certificatesNeedingOcsp(db, new Date(), new Date(Date.now() + 6 * 3_600_000), 1000);
    await t.service.revocation.ocsp.refreshDue();
    expect(await due()).toEqual([]);
    // Half a day on, every response is past half its life: all are due again.
    const later = await certificatesNeedingOcsp(db, new Date(), new Date(Date.now() + 13 * 3_600_000), 1000);
    expect(later.length).toBeGreaterThan(3);
  });
});

describe("revoking with the CLI while the service runs", () => {
  it("shows in OCSP within 5 seconds", async () => {
    const c = await issue("cli.example.test");
    const r = await runCliInProcess(["revoke", c.serial, "--reason", "superseded"], t.env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Revoked .* superseded/);
    await within(5_000, async () => /cert\.pem: revoked/.test((await rp.ocsp(ocspUrlOf(c.certificate), c.chain, t.rootPem, { certPem: c.certificate })).out));
    const again = await runCliInProcess(["revoke", c.serial, "--reason", "superseded"], t.env);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/Already revoked/);
    const bad = await runCliInProcess(["revoke", c.serial, "--reason", "sometimes"], t.env);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split("\n")).toEqual(['hsm-ca revoke: unknown reason "sometimes"']);
  });
});

describe("a revocation that has returned, at every replica", () => {
  /** A second replica of the service on the same database and HSM token, as behind a load balancer. */
  let b: Service;

  beforeAll(async () => {
    b = await startService(loadConfig({ ...t.env, HSM_CA_HTTPS_PORT: "0", HSM_CA_HTTP_PORT: "0" }), createLogger("silent"));
  });
  afterAll(async () => {
    await b?.close();
  });

  /** The GET path of an OCSP request for the certificate, without a nonce, as staplers and browsers send it. */
  async function ocspPath(c: Issued): Promise<string> {
    const reqFile = `${rp.dir}/${c.serial}.req`;
    expect((await rp.openssl(["ocsp", "-issuer", rp.file("i.pem", c.chain), "-cert", rp.file("c.pem", c.certificate), "-no_nonce", "-reqout", reqFile])).ok).toBe(true);
    return `/ocsp/${encodeURIComponent(fs.readFileSync(reqFile).toString("base64"))}`;
  }

  /** Fetches first (nothing in between the caller's step before and the request), then lets openssl read the status. */
  async function statusAt(baseUrl: string, path: string): Promise<string> {
    const res = await fetchBytes(baseUrl + path);
    expect(res.status).toBe(200);
    const text = (await rp.openssl(["ocsp", "-respin", rp.file("resp.der", res.body), "-resp_text", "-noverify"])).out;
    return /Cert Status: (\w+)/.exec(text)?.[1] ?? text;
  }

  const memoryHits = async (baseUrl: string) =>
    Number(/^hsmca_ocsp_cache_hits_total\{tier="memory"\} (\d+)/m.exec(await (await fetch(`${baseUrl}/metrics`)).text())?.[1] ?? 0);

  /** Asks twice: the second answer is "good" from the replica's memory (its memory hits count it). */
  async function cachedGoodAt(baseUrl: string, path: string): Promise<void> {
    expect(await statusAt(baseUrl, path)).toBe("good");
    const hits = await memoryHits(baseUrl);
    expect(await statusAt(baseUrl, path)).toBe("good");
    expect(await memoryHits(baseUrl)).toBe(hits + 1);
  }

  it("a good cached at replica B is revoked at B the moment a REST revocation at A returns, and at A too", async () => {
    const c = await issue("replicas.example.test");
    const path = await ocspPath(c);
    await cachedGoodAt(b.httpUrl, path);
    await cachedGoodAt(t.service.httpUrl, path);
    const res = await t.api("POST", `/api/v1/certificates/${c.serial}/revoke`, { token: admin, json: { reason: "superseded" } });
    expect(res.status, res.text).toBe(200);
    // No wait: the revocation call has returned.
    expect(await statusAt(b.httpUrl, path)).toBe("revoked");
    expect(await statusAt(t.service.httpUrl, path)).toBe("revoked");
  });

  it("the same after a CLI revocation, at both replicas", async () => {
    const c = await issue("replicas-cli.example.test");
    const path = await ocspPath(c);
    await cachedGoodAt(b.httpUrl, path);
    await cachedGoodAt(t.service.httpUrl, path);
    const r = await runCli(["revoke", c.serial, "--reason", "superseded"], t.env);
    expect(r.code, r.stderr).toBe(0);
    expect(await statusAt(t.service.httpUrl, path)).toBe("revoked");
    expect(await statusAt(b.httpUrl, path)).toBe("revoked");
  });

  it("a certificate still good keeps being served good from memory", async () => {
    const c = await issue("replicas-good.example.test");
    const path = await ocspPath(c);
    await cachedGoodAt(b.httpUrl, path);
    await cachedGoodAt(b.httpUrl, path);
  });
});

describe("the root's CRL", () => {
  it("lists a revoked intermediate, and then openssl -crl_check_all rejects its certificates", async () => {
    const c = await issue("under-revoked-ca.example.test");
    const intermediateSerial = t.service.ctx.issuer().row.serial;
    const r = await runCliInProcess(["revoke", intermediateSerial, "--reason", "cACompromise"], t.env);
    expect(r.code, r.stderr).toBe(0);
    const rootCrlUrl = crlUrlOf(t.chainPem);
    await within(5_000, async () => (await rp.crlText((await fetchBytes(rootCrlUrl)).body)).includes(intermediateSerial.toUpperCase()));
    const rootCrl = await rp.crlPem((await fetchBytes(rootCrlUrl)).body, "root-crl2.pem");
    expect(await rp.crlText((await fetchBytes(rootCrlUrl)).body)).toMatch(/CA Compromise/);
    const issuerCrl = await rp.crlPem((await fetchBytes(crlUrlOf(c.certificate))).body, "issuer-crl2.pem");
    const v = await rp.verify(t.rootPem, c.chain, c.certificate, [issuerCrl, rootCrl], "-crl_check_all");
    expect(v.ok).toBe(false);
    expect(v.out).toMatch(/certificate revoked/);
    // And the service stops issuing from the revoked intermediate.
    await within(5_000, async () => {
      const { csr } = makeCsr({ subject: "/CN=after.example.test", san: "DNS:after.example.test" });
      const res = await t.api("POST", "/api/v1/certificates", { token: admin, json: { csr, profile: "tls-server" } });
      return res.status === 503 && res.body.type === PROBLEM_TYPE_PREFIX + "ca-not-ready";
    });
  });
});
