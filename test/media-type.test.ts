/**
 * The JSON endpoints take JSON bodies only: text/plain, forms and bodies
 * without a Content-Type get 415 unsupported-media-type and change nothing.
 * ACME keeps RFC 8555 §6.2 (application/jose+json, its own 415 problem),
 * OCSP takes application/ocsp-request, the dashboard's login takes its form.
 */
import https from "node:https";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { countCertificates } from "../src/store/certificates.ts";
import { AcmeClient } from "./helpers/acme-client.ts";
import { newAccountKey } from "./helpers/acme-jws.ts";
import { makeCsr } from "./helpers/openssl.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

let t: TestService;
let issuer: string;
let admin: string;

/** A request with exactly these headers: no Content-Type is added for us. */
function send(method: string, path: string, body: string | Buffer | undefined, headers: Record<string, string>) {
  return new Promise<{ status: number; type: string; text: string; json: any }>((resolve, reject) => {
    const req = https.request(new URL(path, t.service.httpsUrl), { method, ca: t.rootPem, agent: false, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (d: Buffer) => chunks.push(d));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        const type = String(res.headers["content-type"] ?? "");
        resolve({ status: res.statusCode!, type, text, json: /json/.test(type) && text ? JSON.parse(text) : undefined });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

beforeAll(async () => {
  t = await startTestService("pglite");
  [issuer, admin] = await Promise.all([t.token("issuer", "tls-server"), t.token("admin")]);
});
afterAll(async () => {
  await t?.stop();
});

describe("JSON endpoints", () => {
  it("answer 415 to a certificate request sent as text/plain, a form, multipart or without a Content-Type, and issue nothing", async () => {
    const { csr } = makeCsr({ san: "DNS:media.example.test" });
    const json = JSON.stringify({ csr, profile: "tls-server" });
    const before = await countCertificates(t.service.ctx.store.db);
    const auth = { authorization: `Bearer ${issuer}` };
    for (const [type, body] of [
      ["text/plain", json],
      ["application/x-www-form-urlencoded", `csr=${encodeURIComponent(csr)}&profile=tls-server`],
      ["multipart/form-data; boundary=x", `--x\r\ncontent-disposition: form-data; name="csr"\r\n\r\n${csr}\r\n--x--\r\n`],
      [undefined, json],
    ] as const) {
      const res = await send("POST", "/api/v1/certificates", body, { ...auth, ...(type ? { "content-type": type } : {}) });
      expect(res.status, `${type}: ${res.text}`).toBe(415);
      expect(res.type).toMatch(/^application\/problem\+json/);
      expect(res.json).toMatchObject({ type: "urn:hsm-ca:problem:unsupported-media-type", status: 415, instance: "/api/v1/certificates" });
      expect(res.json.detail).toMatch(/application\/json/);
    }
    expect(await countCertificates(t.service.ctx.store.db)).toBe(before);

    // The same body as application/json (with a charset) is issued.
    const ok = await send("POST", "/api/v1/certificates", json, { ...auth, "content-type": "application/json; charset=utf-8" });
    expect(ok.status, ok.text).toBe(201);

    // Revocation too: refused as text/plain, the certificate stays valid.
    const revoke = await send("POST", `/api/v1/certificates/${ok.json.serial}/revoke`, '{"reason":"superseded"}', { ...auth, "content-type": "text/plain" });
    expect(revoke.status).toBe(415);
    expect((await t.api("GET", `/api/v1/certificates/${ok.json.serial}`, { token: admin })).body.status).toBe("valid");
  });

  it("take a POST without a body without a Content-Type", async () => {
    const res = await send("POST", `/api/v1/tokens/${/^hsmca_([0-9a-f]{12})_/.exec(issuer)![1]}/revoke`, undefined, { authorization: `Bearer ${admin}` });
    expect(res.status, res.text).toBe(200);
    expect(res.json).toMatchObject({ role: "issuer", alreadyRevoked: false });
  });
});

describe("other media types keep their own rules", () => {
  it("ACME refuses application/json with its own 415 malformed problem, and takes application/jose+json", async () => {
    const acme = new AcmeClient(t.service.httpsUrl, t.rootPem);
    try {
      await acme.init();
      const key = newAccountKey("ES256");
      const wrong = await acme.post(acme.directory.newAccount, key, { termsOfServiceAgreed: true }, { contentType: "application/json" });
      expect(wrong.status).toBe(415);
      expect(wrong.body).toMatchObject({ type: "urn:ietf:params:acme:error:malformed", status: 415 });
      expect(wrong.nonce).toBeTruthy();
      const right = await acme.post(acme.directory.newAccount, key, { termsOfServiceAgreed: true });
      expect(right.status, right.text).toBe(201);
    } finally {
      acme.close();
    }
  });

  it("OCSP takes application/ocsp-request on both listeners (an OCSP answer, not a 415)", async () => {
    const garbage = Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00]);
    for (const base of [t.service.httpsUrl, t.service.httpUrl]) {
      const res =
        base === t.service.httpsUrl
          ? await send("POST", "/ocsp", garbage, { "content-type": "application/ocsp-request" })
          : await fetch(`${base}/ocsp`, { method: "POST", body: garbage, headers: { "content-type": "application/ocsp-request" } }).then(async (r) => ({
              status: r.status,
              type: r.headers.get("content-type") ?? "",
            }));
      expect(res.status).toBe(200);
      expect(res.type).toBe("application/ocsp-response");
    }
  });

  it("the dashboard's login takes its form", async () => {
    const res = await send("POST", "/dashboard/login", "token=nothing", { "content-type": "application/x-www-form-urlencoded" });
    expect(res.status).toBe(401);
    expect(res.type).toMatch(/^text\/html/);
  });
});
