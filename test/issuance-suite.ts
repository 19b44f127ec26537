import crypto from "node:crypto";
import tls from "node:tls";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROBLEM_TYPE_PREFIX } from "../src/api/problem.ts";
import { countCertificates } from "../src/store/certificates.ts";
import { makeCsr, verify, x509Text } from "./helpers/openssl.ts";
import { startTestService, type Backend, type TestService } from "./helpers/service.ts";

/**
 * The REST API end to end, as a user drives it: a real SoftHSM2 token, a
 * real database (PostgreSQL or PGlite), the real CLI for tokens, openssl
 * to make CSRs and to verify what comes back.
 */
/** The certificate a fresh TLS connection is shown, checked against the root. */
function peerCertificate(url: string, rootPem: string): Promise<tls.PeerCertificate> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: hostname, port: Number(port), ca: rootPem, servername: "localhost" }, () => {
      resolve(socket.getPeerCertificate());
      socket.end();
    });
    socket.on("error", reject);
  });
}

export function issuanceSuite(backend: Backend) {
  let t: TestService;
  let issuerToken: string;
  let adminToken: string;
  let auditorToken: string;
  const count = () => countCertificates(t.service.ctx.store.db);

  beforeAll(async () => {
    t = await startTestService(backend);
    issuerToken = await t.token("issuer", "tls-server", "spiffe-svid");
    adminToken = await t.token("admin");
    auditorToken = await t.token("auditor");
  });
  afterAll(async () => {
    await t?.stop();
  });

  const issue = (body: Record<string, unknown>, token = issuerToken) =>
    t.api("POST", "/api/v1/certificates", { token, json: body });

  describe(`hierarchy (${backend})`, () => {
    it("has a self-signed root (pathLen 2) and an intermediate (pathLen 1, HSM_CA_INTERMEDIATE_PATH_LENGTH) signed by it, keys in the HSM", async () => {
      const res = await t.api("GET", "/api/v1/cas", { token: auditorToken });
      expect(res.status).toBe(200);
      const items = res.body.items as any[];
      expect(items.map((c) => c.role).sort()).toEqual(["intermediate", "root"]);
      for (const ca of items) {
        expect(ca.keyProvenance).toMatchObject({ token: true, local: true, sensitive: true, extractable: false, neverExtractable: true });
        expect(ca.keyId).toMatch(/^[0-9a-f]+$/);
        expect(ca.status).toBe("active");
      }
      const root = items.find((c) => c.role === "root");
      const inter = items.find((c) => c.role === "intermediate");
      expect(root.certificate).toBe(t.rootPem);
      expect(inter.certificate).toBe(t.chainPem);
      expect(x509Text(t.rootPem)).toMatch(/CA:TRUE, pathlen:2/);
      expect(x509Text(t.chainPem)).toMatch(/CA:TRUE, pathlen:1/);
      // The intermediate verifies against the root alone.
      expect(verify(t.rootPem, t.rootPem, t.chainPem).ok).toBe(true);
      const rootCert = new x509.X509Certificate(t.rootPem);
      expect(await rootCert.isSelfSigned()).toBe(true);
    });

    it("serves the root and chain over plain HTTP and HTTPS alike", async () => {
      const overHttps = await t.api("GET", "/ca/root.pem");
      expect(overHttps.status).toBe(200);
      expect(overHttps.text).toBe(t.rootPem);
      expect(t.rootPem).toMatch(/^-----BEGIN CERTIFICATE-----/);
    });

    it("reports liveness and readiness", async () => {
      expect((await t.api("GET", "/healthz")).status).toBe(200);
      const ready = await t.api("GET", "/readyz");
      expect(ready.status).toBe(200);
      expect(ready.body.checks).toEqual({ hsm: "ok", database: "ok" });
    });
  });

  describe(`issuing (${backend})`, () => {
    it("issues a tls-server certificate that openssl verifies against the root", async () => {
      const { csr } = makeCsr({ subject: "/CN=app.example.test", san: "DNS:app.example.test,IP:127.0.0.1" });
      const res = await issue({ csr, profile: "tls-server", validity: "24h" });
      expect(res.status).toBe(201);
      expect(res.headers.location).toBe(`/api/v1/certificates/${res.body.serial}`);
      const v = verify(t.rootPem, res.body.chain, res.body.certificate, ["-x509_strict", "-purpose", "sslserver"]);
      expect(v.output).toContain("OK");
      expect(v.ok).toBe(true);
      const text = x509Text(res.body.certificate);
      expect(text).toMatch(/DNS:app\.example\.test, IP Address:127\.0\.0\.1/);
      expect(text).toMatch(/CA:FALSE/);
      expect(text).toMatch(/Subject Key Identifier/);
      expect(text).toMatch(/Authority Key Identifier/);
      const cert = new x509.X509Certificate(res.body.certificate);
      const hours = (cert.notAfter.getTime() - Date.now()) / 3_600_000;
      expect(hours).toBeGreaterThan(23.9);
      expect(hours).toBeLessThanOrEqual(24);
      // Positive serial of at least 64 bits, as issued and as stored.
      expect(res.body.serial).toMatch(/^[0-7][0-9a-f]{31}$/);
      expect(cert.serialNumber.toLowerCase()).toBe(res.body.serial);
      // Stored: the API returns the very certificate it handed out.
      const stored = await t.api("GET", `/api/v1/certificates/${res.body.serial}`, { token: auditorToken });
      expect(stored.status).toBe(200);
      expect(stored.body.certificate).toBe(res.body.certificate);
    });

    it("issues tls-client for an RSA key with keyEncipherment and clientAuth", async () => {
      const { csr } = makeCsr({ key: "rsa-2048", subject: "/CN=alice/O=Example" });
      const res = await issue({ csr, profile: "tls-client" }, adminToken);
      expect(res.status).toBe(201);
      expect(verify(t.rootPem, res.body.chain, res.body.certificate, ["-purpose", "sslclient"]).ok).toBe(true);
      const text = x509Text(res.body.certificate);
      expect(text).toMatch(/Digital Signature, Key Encipherment/);
      expect(text).toMatch(/TLS Web Client Authentication/);
      expect(text).toMatch(/Subject: O ?= ?Example, CN ?= ?alice/);
    });

    it("issues an X.509-SVID: one URI SAN, empty subject, critical SAN, both EKUs", async () => {
      const { csr } = makeCsr({ subject: "/", san: "URI:spiffe://example.org/ns/default/sa/web" });
      const res = await issue({ csr, profile: "spiffe-svid" });
      expect(res.status).toBe(201);
      expect(verify(t.rootPem, res.body.chain, res.body.certificate).ok).toBe(true);
      const text = x509Text(res.body.certificate);
      expect(text).toMatch(/Subject Alternative Name: critical\s+URI:spiffe:\/\/example\.org\/ns\/default\/sa\/web/);
      expect(text).toMatch(/Subject: *\n/);
      expect(text).toMatch(/TLS Web Server Authentication, TLS Web Client Authentication/);
      expect(text).toMatch(/CA:FALSE/);
      const cert = new x509.X509Certificate(res.body.certificate);
      expect(cert.notAfter.getTime() - Date.now()).toBeLessThanOrEqual(3_600_000);
    });

    it("answers 202 for code-signing: the request waits for two admins' approval (test/approvals.test.ts), nothing is signed yet", async () => {
      const { csr } = makeCsr({ key: "ec-p384", subject: "/CN=Release Signing/O=Example Corp" });
      const before = await count();
      const res = await issue({ csr, profile: "code-signing", validity: "30d" }, adminToken);
      expect(res.status, res.text).toBe(202);
      expect(res.headers.location).toBe(`/api/v1/requests/${res.body.id}`);
      expect(res.body).toMatchObject({ status: "pending", required: 2, approvals: [] });
      expect(await count()).toBe(before);
    });

    it("accepts Ed25519 subject keys where the profile allows them", async () => {
      const { csr } = makeCsr({ key: "ed25519", subject: "/CN=ed.example.test", san: "DNS:ed.example.test" });
      const res = await issue({ csr, profile: "tls-server" });
      expect(res.status).toBe(201);
      expect(x509Text(res.body.certificate)).toMatch(/ED25519/);
      expect(verify(t.rootPem, res.body.chain, res.body.certificate).ok).toBe(true);
    });

    it("issues 64 concurrent requests, all stored, all with distinct serials", async () => {
      const before = await count();
      const csrs = Array.from({ length: 8 }, (_, i) => makeCsr({ subject: `/CN=w${i}.example.test` }).csr);
      const results = await Promise.all(
        Array.from({ length: 64 }, (_, i) => issue({ csr: csrs[i % csrs.length], profile: "tls-server", validity: "1h" })),
      );
      expect(results.map((r) => r.status)).toEqual(Array(64).fill(201));
      const serials = new Set(results.map((r) => r.body.serial));
      expect(serials.size).toBe(64);
      expect(await count()).toBe(before + 64);
      for (const r of results.slice(0, 4)) expect(verify(t.rootPem, r.body.chain, r.body.certificate).ok).toBe(true);
    });
  });

  describe(`bad input (${backend}): a specific problem, and nothing stored`, () => {
    const goodCsr = () => makeCsr({ subject: "/CN=ok.example.test", san: "DNS:ok.example.test" }).csr;
    const tamper = (pem: string) => {
      const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64");
      der[der.length - 5] = der[der.length - 5]! ^ 0xff;
      return `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
    };
    const cases: Array<[string, () => Record<string, unknown> | string, number, string, RegExp]> = [
      ["not PEM", () => ({ csr: "hello", profile: "tls-server" }), 400, "bad-csr", /PEM/],
      [
        "DER garbage",
        () => ({ csr: `-----BEGIN CERTIFICATE REQUEST-----\n${crypto.randomBytes(120).toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`, profile: "tls-server" }),
        400,
        "bad-csr",
        /PKCS#10/,
      ],
      ["a CSR whose signature is wrong", () => ({ csr: tamper(goodCsr()), profile: "tls-server" }), 400, "bad-csr-signature", /signature/],
      ["RSA 1024", () => ({ csr: makeCsr({ key: "rsa-1024", san: "DNS:a.example.test" }).csr, profile: "tls-server" }), 400, "bad-public-key", /1024/],
      ["an unsupported curve", () => ({ csr: makeCsr({ key: "secp256k1", san: "DNS:a.example.test" }).csr, profile: "tls-server" }), 400, "bad-public-key", /secp256k1/],
      ["a SAN outside the profile", () => ({ csr: makeCsr({ san: "DNS:www.google.com" }).csr, profile: "tls-server" }), 400, "rejected-identifier", /www\.google\.com/],
      ["an unknown profile", () => ({ csr: goodCsr(), profile: "no-such-profile" }), 404, "unknown-profile", /no-such-profile/],
      ["a validity beyond the maximum", () => ({ csr: goodCsr(), profile: "tls-server", validity: "365d" }), 400, "bad-validity", /90d/],
      ["a body that is not JSON", () => "{not json", 400, "malformed-request", /csr, profile/],
      ["a missing profile field", () => ({ csr: goodCsr() }), 400, "malformed-request", /profile/],
    ];

    for (const [name, body, status, kind, detail] of cases) {
      it(`refuses ${name}`, async () => {
        const before = await count();
        const b = body();
        const res = await t.api("POST", "/api/v1/certificates", {
          token: issuerToken,
          ...(typeof b === "string" ? { raw: b } : { json: b }),
        });
        expect(res.status).toBe(status);
        expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
        expect(res.body).toMatchObject({ type: PROBLEM_TYPE_PREFIX + kind, status });
        expect(res.body.detail).toMatch(detail);
        expect(await count()).toBe(before);
      });
    }

    it("refuses a body over 64 KiB with 413", async () => {
      const before = await count();
      const res = await t.api("POST", "/api/v1/certificates", {
        token: issuerToken,
        json: { csr: goodCsr() + " ".repeat(70 * 1024), profile: "tls-server" },
      });
      expect(res.status).toBe(413);
      expect(res.body.type).toBe(PROBLEM_TYPE_PREFIX + "payload-too-large");
      expect(await count()).toBe(before);
    });

    it("counts a chunked body without Content-Length: over 64 KiB is 413, a small one is issued", async () => {
      const before = await count();
      const chunked = { "transfer-encoding": "chunked" };
      const big = await t.api("POST", "/api/v1/certificates", {
        token: issuerToken,
        headers: chunked,
        raw: JSON.stringify({ csr: goodCsr() + " ".repeat(70 * 1024), profile: "tls-server" }),
      });
      expect(big.status).toBe(413);
      expect(big.body.type).toBe(PROBLEM_TYPE_PREFIX + "payload-too-large");
      expect(big.headers.connection).toBe("close");
      expect(await count()).toBe(before);
      const small = await t.api("POST", "/api/v1/certificates", { token: issuerToken, headers: chunked, raw: JSON.stringify({ csr: goodCsr(), profile: "tls-server" }) });
      expect(small.status, small.text).toBe(201);
      expect(await count()).toBe(before + 1);
    });

    it("refuses a missing or wrong token with 401 and a token of the wrong scope or role with 403", async () => {
      const before = await count();
      const body = { csr: goodCsr(), profile: "tls-server" };
      const none = await t.api("POST", "/api/v1/certificates", { json: body });
      expect(none.status).toBe(401);
      expect(none.body.type).toBe(PROBLEM_TYPE_PREFIX + "unauthorized");
      expect(none.headers["www-authenticate"]).toMatch(/^Bearer/);
      const wrong = await t.api("POST", "/api/v1/certificates", { json: body, token: "hsmca_000000000000_" + "x".repeat(32) });
      expect(wrong.status).toBe(401);
      const auditor = await issue(body, auditorToken);
      expect(auditor.status).toBe(403);
      expect(auditor.body.type).toBe(PROBLEM_TYPE_PREFIX + "forbidden");
      const outOfScope = await issue({ csr: makeCsr({ subject: "/CN=bob" }).csr, profile: "tls-client" });
      expect(outOfScope.status).toBe(403);
      expect(outOfScope.body.detail).toMatch(/tls-client/);
      expect(await count()).toBe(before);
      // Reading needs a token too.
      expect((await t.api("GET", "/api/v1/cas")).status).toBe(401);
      expect((await t.api("GET", "/api/v1/certificates")).status).toBe(401);
    });
  });

  describe(`reading (${backend})`, () => {
    it("lists certificates by profile with cursor paging", async () => {
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const q: string = `/api/v1/certificates?profile=spiffe-svid&limit=1${cursor ? `&cursor=${cursor}` : ""}`;
        const res = await t.api("GET", q, { token: auditorToken });
        expect(res.status).toBe(200);
        for (const item of res.body.items) {
          expect(item.profile).toBe("spiffe-svid");
          seen.push(item.serial);
        }
        cursor = res.body.nextCursor;
      } while (cursor);
      expect(seen.length).toBeGreaterThanOrEqual(1);
      expect(new Set(seen).size).toBe(seen.length);
      const all = await t.api("GET", "/api/v1/certificates?status=valid&limit=500", { token: adminToken });
      expect(all.body.items.length).toBeGreaterThan(64);
    });

    it("shows an issuer only its own profiles' certificates", async () => {
      const res = await t.api("GET", "/api/v1/certificates?limit=500", { token: issuerToken });
      expect(res.status).toBe(200);
      const profiles = new Set(res.body.items.map((i: any) => i.profile));
      expect([...profiles].every((p) => p === "tls-server" || p === "spiffe-svid")).toBe(true);
      expect((await t.api("GET", "/api/v1/certificates?profile=code-signing", { token: issuerToken })).status).toBe(403);
    });

    it("answers 404 problem+json for an unknown serial", async () => {
      const res = await t.api("GET", "/api/v1/certificates/0abc", { token: auditorToken });
      expect(res.status).toBe(404);
      expect(res.body.type).toBe(PROBLEM_TYPE_PREFIX + "not-found");
    });
  });

  describe(`HTTPS listener (${backend})`, () => {
    it("serves a certificate from its own intermediate, stored, and renews it when two thirds of its life are gone", async () => {
      const first = await peerCertificate(t.service.httpsUrl, t.rootPem);
      expect(first.issuer.CN).toBe("hsm-ca Issuing CA 1");
      expect(first.subjectaltname).toContain("IP Address:127.0.0.1");
      const stored = await t.api("GET", `/api/v1/certificates/${first.serialNumber.toLowerCase()}`, { token: adminToken });
      expect(stored.body.profile).toBe("hsm-ca-server");
      expect(await t.service.renewServerCertificate(new Date())).toBe(false);
      const later = new Date(Date.now() + 21 * 86_400_000);
      expect(await t.service.renewServerCertificate(later)).toBe(true);
      const second = await peerCertificate(t.service.httpsUrl, t.rootPem);
      expect(second.serialNumber).not.toBe(first.serialNumber);
      expect((await t.api("GET", "/healthz")).status).toBe(200);
    });
  });

  describe(`database guarantees (${backend})`, () => {
    it("refuses a second certificate row with an existing serial", async () => {
      const [row] = (await t.api("GET", "/api/v1/certificates?limit=1", { token: adminToken })).body.items;
      const { insertCertificate } = await import("../src/store/certificates.ts");
      const { isUniqueViolation } = await import("../src/store/errors.ts");
      const err = await insertCertificate(t.service.ctx.store.db, {
        serial: row.serial,
        issuerId: t.service.ctx.issuer().row.id,
        profile: "tls-server",
        subject: "CN=dup",
        sans: [],
        notBefore: new Date(),
        notAfter: new Date(),
        certificatePem: "x",
        fingerprintSha256: "x",
        spkiSha256: "x",
      }).catch((e) => e);
      expect(isUniqueViolation(err)).toBe(true);
    });
  });
}
