import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AcmeClient } from "./helpers/acme-client.ts";
import { newAccountKey } from "./helpers/acme-jws.ts";
import { makeCsr } from "./helpers/openssl.ts";
import { RelyingParty } from "./helpers/relying-party.ts";
import { startTestService, type TestService } from "./helpers/service.ts";
import { waitFor } from "./helpers/wait.ts";

/**
 * The request log as an operator reads it: one JSON line per request with
 * its id (echoed to the client), method, route pattern, status, latency and
 * who asked (API token id or ACME account), never a secret and never a raw
 * path.
 */
let t: TestService;
let issuerToken: string;
const lines: string[] = [];

interface RequestLine {
  msg: string;
  level: number;
  reqId: string;
  listener: string;
  method: string;
  route: string;
  status: number;
  ms: number;
  tokenId?: string;
  role?: string;
  acmeAccount?: string;
}

const parsed = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
const requestLines = () => parsed().filter((l) => l.msg === "request") as unknown as RequestLine[];
/**
 * The one request line with this id (fails unless there is exactly one).
 * Log lines are written as the response goes out, so the client may see the
 * response first: waits for the line to appear.
 */
async function lineFor(reqId: string): Promise<RequestLine> {
  await waitFor(`the request line for ${reqId}`, () => requestLines().some((l) => l.reqId === reqId), { timeoutMs: 5_000, intervalMs: 10 });
  const found = requestLines().filter((l) => l.reqId === reqId);
  expect(found, `request lines for ${reqId}`).toHaveLength(1);
  return found[0]!;
}

beforeAll(async () => {
  t = await startTestService("pglite", {}, (line) => lines.push(line));
  issuerToken = await t.token("issuer", "tls-server");
});
afterAll(async () => {
  await t?.stop();
});

describe("request log", () => {
  it("writes one line per request with id, route pattern, status, latency and the token id, and echoes the id", async () => {
    const issued = await t.api("POST", "/api/v1/certificates", { token: issuerToken, json: { csr: makeCsr({ san: "DNS:log.example.test" }).csr, profile: "tls-server" } });
    expect(issued.status).toBe(201);
    const read = await t.api("GET", `/api/v1/certificates/${issued.body.serial}`, { token: issuerToken });
    expect(read.status).toBe(200);

    const tokenId = /^hsmca_([0-9a-f]{12})_/.exec(issuerToken)![1];
    const post = await lineFor(String(issued.headers["x-request-id"]));
    expect(post).toMatchObject({ level: 30, listener: "https", method: "POST", route: "/api/v1/certificates", status: 201, tokenId, role: "issuer" });
    expect(post.ms).toBeGreaterThan(0);
    expect(post.ms).toBeLessThan(10_000);
    const get = await lineFor(String(read.headers["x-request-id"]));
    expect(get).toMatchObject({ method: "GET", route: "/api/v1/certificates/:serial", status: 200, tokenId });
    // The route pattern, not the path: no serial in the request line.
    expect(JSON.stringify(get)).not.toContain(issued.body.serial);
    // Other lines written while the request ran carry its id too.
    expect(parsed().some((l) => l.reqId === post.reqId && l.msg === "certificate issued")).toBe(true);
  });

  it("keeps a sane incoming X-Request-Id and replaces one that is not", async () => {
    const sane = await t.api("GET", "/healthz", { headers: { "x-request-id": "trace-4bf92f3577b34da6a3ce929d0e0e4736" } });
    expect(sane.headers["x-request-id"]).toBe("trace-4bf92f3577b34da6a3ce929d0e0e4736");
    const insane = await t.api("GET", "/healthz", { headers: { "x-request-id": "<script>" + "x".repeat(300) } });
    expect(insane.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
    expect(await lineFor(String(insane.headers["x-request-id"]))).toMatchObject({ route: "/healthz", status: 200 });
    // Probes are logged at debug.
    expect(await lineFor("trace-4bf92f3577b34da6a3ce929d0e0e4736")).toMatchObject({ level: 20, route: "/healthz", status: 200, listener: "https" });
    expect(lines.join("\n")).not.toContain("<script>");
  });

  it("logs refusals without a principal, unmatched paths as 'unmatched', and OCSP GETs by pattern", async () => {
    const bad = await t.api("GET", "/api/v1/cas", { token: "hsmca_000000000000_notarealtokenatall" });
    expect(bad.status).toBe(401);
    const missing = await t.api("GET", "/no/such/thing/0123456789abcdef");
    expect(missing.status).toBe(404);
    const rp = new RelyingParty();
    const ocspUrl = `${t.service.httpUrl}/ocsp`;
    // An OCSP GET (RFC 6960 A.1): the base64 request is the path.
    const r = await rp.ocsp(ocspUrl, t.chainPem, t.rootPem, { serial: "01" }, ["-no_nonce", "-reqout", "req.der"]);
    expect(r.out).toMatch(/unknown/i);
    const b64 = encodeURIComponent(fs.readFileSync(path.join(rp.dir, "req.der")).toString("base64"));
    const viaGet = await fetch(`${ocspUrl}/${b64}`);
    expect(viaGet.status).toBe(200);

    const unauthorized = await lineFor(String(bad.headers["x-request-id"]));
    expect(unauthorized).toMatchObject({ route: "/api/v1/cas", status: 401, level: 30 });
    expect(unauthorized.tokenId).toBeUndefined();
    expect(await lineFor(String(missing.headers["x-request-id"]))).toMatchObject({ route: "unmatched", status: 404 });
    expect(await lineFor(String(viaGet.headers.get("x-request-id")))).toMatchObject({ listener: "http", method: "GET", route: "/ocsp/*", status: 200 });
    expect(lines.join("\n")).not.toContain(b64.slice(0, 40));
    expect(lines.join("\n")).not.toContain("0123456789abcdef");
  });

  it("names the ACME account of a signed request", async () => {
    const acme = new AcmeClient(t.service.httpsUrl, t.rootPem);
    await acme.init();
    const key = newAccountKey("ES256");
    const { account } = await acme.newAccount(key);
    const res = await acme.post(account.url, key, "", { kid: account.url });
    expect(res.status).toBe(200);
    const accountId = account.url.split("/").at(-1)!;
    const line = await lineFor(String(res.headers["x-request-id"]));
    expect(line).toMatchObject({ method: "POST", route: "/acme/acct/:id", status: 200, acmeAccount: accountId });
    expect(line.tokenId).toBeUndefined();
  });

  it("never writes an API token's secret", async () => {
    // The random part after "hsmca_<id>_" (it may itself contain "_").
    const secret = issuerToken.replace(/^hsmca_[0-9a-f]{12}_/, "");
    expect(secret.length).toBeGreaterThan(20);
    expect(lines.length).toBeGreaterThan(10);
    for (const line of lines) {
      expect(line).not.toContain(issuerToken);
      expect(line).not.toContain(secret);
    }
  });
});
