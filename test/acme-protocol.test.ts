/**
 * The ACME server (RFC 8555, RFC 9773) over HTTPS, as a client sees it: the
 * real service on a fresh SoftHSM2 token and PGlite, a minimal client
 * (helpers/acme-client.ts) trusting only the CA's root, http-01 challenges
 * answered by a node http server here on loopback, EAB keys made with the
 * real CLI. Every response, errors included, must carry a fresh Replay-Nonce.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "./helpers/ports.ts";
import { cleanUpAcme } from "../src/jobs/acme-cleanup.ts";
import { eq } from "drizzle-orm";
import { certificateBySerial } from "../src/store/certificates.ts";
import { acmeEabKeys } from "../src/store/schema.ts";
import { AcmeClient, type Account, type AcmeResponse } from "./helpers/acme-client.ts";
import { b64url, keyAuthorization, newAccountKey, signEab, signJws, type AccountKey } from "./helpers/acme-jws.ts";
import { REPO, runCliInProcess } from "./helpers/cli.ts";
import { makeCsr, tempDir, verify } from "./helpers/openssl.ts";
import { RelyingParty } from "./helpers/relying-party.ts";
import { startTestService, type TestService } from "./helpers/service.ts";
import { waitFor } from "./helpers/wait.ts";

const ERR = "urn:ietf:params:acme:error:";
const NONCE = /^[A-Za-z0-9_-]{16,}$/;

let t: TestService;
/** The default directory (/acme/directory). */
let acme: AcmeClient;
/** The EAB directory (/acme/eab/directory). */
let eab: AcmeClient;
let profilesDir: string;
let http01: http.Server;
/** What the http-01 server answers, per token: a body, or a redirect. */
const challengeBodies = new Map<string, string | { redirect: string }>();
/** Milliseconds the http-01 responder waits before answering a token. */
const challengeDelays = new Map<string, number>();
/** The CA's plain-HTTP port; also named as the HTTPS port http-01 redirects may use, so that only the own-listener rule refuses a redirect to it. */
let caHttpPort: number;

function listen(server: net.Server, host: string, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve((server.address() as net.AddressInfo).port));
  });
}
const close = (server: net.Server) => new Promise<void>((resolve) => server.close(() => resolve()));


const EAB_PROFILE = `name: eab
description: EAB-only directory with small limits, for tests.
certificateProfile: tls-server
identifiers:
  ip:
    ranges: [127.0.0.0/8]
externalAccountRequired: true
rateLimits:
  newOrdersPerAccount: { count: 2, window: 1h }
  ordersPerIdentifier: { count: 1, window: 1h }
`;

beforeAll(async () => {
  http01 = http.createServer((req, res) => {
    const token = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(req.url ?? "")?.[1];
    const body = token === undefined ? undefined : challengeBodies.get(token);
    if (body === undefined) {
      res.writeHead(404).end();
      return;
    }
    if (typeof body === "object") {
      res.writeHead(302, { location: body.redirect }).end();
      return;
    }
    const delay = challengeDelays.get(token!) ?? 0;
    setTimeout(() => res.writeHead(200, { "content-type": "text/plain" }).end(body), delay);
  });
  const http01Port = await listen(http01, "127.0.0.1");
  profilesDir = tempDir("acme-profiles-");
  fs.copyFileSync(path.join(REPO, "profiles/acme/default.yaml"), path.join(profilesDir, "default.yaml"));
  fs.writeFileSync(path.join(profilesDir, "eab.yaml"), EAB_PROFILE);
  t = await startTestService("pglite", {
    HSM_CA_ACME_PROFILES_DIR: profilesDir,
    HSM_CA_ACME_HTTP01_PORT: String(http01Port),
    HSM_CA_HTTP_PORT: String((caHttpPort = await freePort())),
    HSM_CA_ACME_TLSALPN01_PORT: String(caHttpPort),
    HSM_CA_ACME_VALIDATION_TIMEOUT_MS: "5000",
    // This file drives a few accounts through dozens of orders back to back, faster than 20 requests a second once
    // challenges answer with their outcome; the per-account limit has its own tests (test/rate-limit.test.ts).
    HSM_CA_ACME_RATE_LIMIT_PER_ACCOUNT: "off",
  });
  acme = new AcmeClient(t.service.httpsUrl, t.rootPem);
  await acme.init();
  eab = new AcmeClient(t.service.httpsUrl, t.rootPem, "/acme/eab/directory");
  await eab.init();
});

afterAll(async () => {
  acme?.close();
  eab?.close();
  await t?.stop();
  if (http01) await close(http01);
  if (profilesDir) fs.rmSync(profilesDir, { recursive: true, force: true });
});

// ------------------------------------------------------------------ helpers

function expectFreshNonce(res: AcmeResponse): void {
  expect(res.nonce, "Replay-Nonce").toMatch(NONCE);
  expect(res.freshNonce, "the Replay-Nonce was handed out before").toBe(true);
}

function expectOk(res: AcmeResponse, status = 200): any {
  expect(res.status, res.text).toBe(status);
  expectFreshNonce(res);
  return res.body;
}

function expectProblem(res: AcmeResponse, status: number, type: string, detail?: RegExp): any {
  expect(res.status, res.text).toBe(status);
  expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
  expect(res.body?.type, res.text).toBe(ERR + type);
  expect(res.body.status).toBe(status);
  expect(typeof res.body.detail).toBe("string");
  if (detail) expect(res.body.detail).toMatch(detail);
  expectFreshNonce(res);
  return res.body;
}

/** Memoises an async value across tests (each test may be run alone). */
function once<T>(f: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= f());
}

async function createAccount(c: AcmeClient, payload: Record<string, unknown> = { termsOfServiceAgreed: true }): Promise<Account> {
  const key = newAccountKey("ES256");
  const res = await c.post(c.directory.newAccount, key, payload);
  expectOk(res, 201);
  return { key, url: res.location! };
}

/** An EAB key made by an admin with the real CLI. */
async function cliEabKey(directory = "eab"): Promise<{ kid: string; hmac: string }> {
  const r = await runCliInProcess(["acme", "eab", "create", "--directory", directory], t.env);
  expect(r.code, r.stderr).toBe(0);
  const kid = /^kid: (\S+)$/m.exec(r.stdout)?.[1];
  const hmac = /^hmac: (\S+)$/m.exec(r.stdout)?.[1];
  expect(kid, r.stdout).toBeTruthy();
  expect(hmac, r.stdout).toBeTruthy();
  return { kid: kid!, hmac: hmac! };
}

async function createEabAccount(): Promise<Account> {
  const { kid, hmac } = await cliEabKey();
  const key = newAccountKey("ES256");
  const res = await eab.post(eab.directory.newAccount, key, {
    termsOfServiceAgreed: true,
    externalAccountBinding: signEab(kid, hmac, key.jwk, eab.directory.newAccount),
  });
  expectOk(res, 201);
  return { key, url: res.location! };
}

const accountA = once(() => createAccount(acme, { termsOfServiceAgreed: true, contact: ["mailto:a@example.com"] }));
const accountB = once(() => createAccount(acme));

const ip = (value: string) => ({ type: "ip", value });

async function newOrder(c: AcmeClient, account: Account, identifiers: object[], extra: object = {}): Promise<AcmeResponse> {
  return c.postAs(account, c.directory.newOrder, { identifiers, ...extra });
}

/**
 * Answers every authorization of the order by http-01 (the server here
 * replies `respond(...)`, by default the key authorization) and polls each
 * until it is no longer pending. Returns the final authorizations.
 */
async function answerHttp01(
  c: AcmeClient,
  account: Account,
  order: any,
  respond?: (keyAuth: string) => string | { redirect: string },
): Promise<any[]> {
  const out: any[] = [];
  for (const authzUrl of order.authorizations as string[]) {
    const authz = expectOk(await c.postAs(account, authzUrl, ""));
    expect(authz.status).toBe("pending");
    const ch = authz.challenges.find((x: any) => x.type === "http-01");
    expect(ch, JSON.stringify(authz)).toBeTruthy();
    expect(ch.status).toBe("pending");
    const keyAuth = keyAuthorization(ch.token, account.key.jwk);
    challengeBodies.set(ch.token, respond ? respond(keyAuth) : keyAuth);
    const started = await c.postAs(account, ch.url, {});
    const view = expectOk(started);
    expect(respond ? ["processing", "valid", "invalid"] : ["processing", "valid"]).toContain(view.status);
    expect(view.url).toBe(ch.url);
    expect(started.links).toContain(`<${authzUrl}>;rel="up"`);
    if (view.status === "processing") expect(started.retryAfter).toBeGreaterThan(0);
    const { res } = await c.poll(account, authzUrl, (b) => b.status !== "pending");
    expectFreshNonce(res);
    out.push(res.body);
  }
  return out;
}

function pemToB64url(pem: string): string {
  return Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64").toString("base64url");
}

function pemBlocks(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
}

/** RFC 9773 §4.1: base64url(AKI keyIdentifier) "." base64url(DER serial INTEGER contents). */
function certIdOf(pem: string): string {
  const cert = new x509.X509Certificate(pem);
  const aki = cert.getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId!;
  let serial = new crypto.X509Certificate(pem).serialNumber.toLowerCase();
  if (serial.length % 2) serial = "0" + serial;
  if (parseInt(serial[0]!, 16) >= 8) serial = "00" + serial; // DER INTEGER is signed
  return `${Buffer.from(aki, "hex").toString("base64url")}.${Buffer.from(serial, "hex").toString("base64url")}`;
}

interface Issued {
  orderUrl: string;
  certUrl: string;
  chainText: string;
  leafPem: string;
  keyPem: string;
  certId: string;
}

/** The whole RFC 8555 flow for 127.0.0.1: order, http-01, finalize, download. */
async function issue(account: Account): Promise<Issued> {
  const created = await newOrder(acme, account, [ip("127.0.0.1")]);
  let order = expectOk(created, 201);
  const orderUrl = created.location!;
  const authzs = await answerHttp01(acme, account, order);
  for (const a of authzs) expect(a.status, JSON.stringify(a)).toBe("valid");
  order = (await acme.poll(account, orderUrl, (b) => b.status !== "pending")).res.body;
  expect(order.status).toBe("ready");
  const { csr, keyPem } = makeCsr({ subject: "/CN=127.0.0.1", san: "IP:127.0.0.1" });
  const fin = await acme.postAs(account, order.finalize, { csr: pemToB64url(csr) });
  const authorizations = order.authorizations;
  order = expectOk(fin);
  expect(order.authorizations).toEqual(authorizations);
  if (order.status === "processing") order = (await acme.poll(account, orderUrl, (b) => b.status !== "processing")).res.body;
  expect(order.status, JSON.stringify(order)).toBe("valid");
  expect(order.certificate).toMatch(/^https:\/\//);
  const dl = await acme.postAs(account, order.certificate, "");
  expectOk(dl);
  expect(dl.headers["content-type"]).toMatch(/^application\/pem-certificate-chain/);
  const blocks = pemBlocks(dl.text);
  expect(blocks.length).toBeGreaterThanOrEqual(2);
  return { orderUrl, certUrl: order.certificate, chainText: dl.text, leafPem: blocks[0]!, keyPem, certId: certIdOf(blocks[0]!) };
}

const certA = once(async () => issue(await accountA()));
const certB = once(async () => issue(await accountA()));
const certC = once(async () => issue(await accountA()));
const certD = once(async () => issue(await accountA()));

/** An order of account A for 127.0.0.1 whose authorization is valid: status ready. */
async function readyOrder(): Promise<{ url: string; order: any }> {
  const account = await accountA();
  const created = await newOrder(acme, account, [ip("127.0.0.1")]);
  expectOk(created, 201);
  await answerHttp01(acme, account, created.body);
  const { res } = await acme.poll(account, created.location!, (b) => b.status !== "pending");
  expect(res.body.status).toBe("ready");
  return { url: created.location!, order: res.body };
}

function keyFromPem(pem: string): AccountKey {
  const priv = crypto.createPrivateKey(pem);
  const jwk = crypto.createPublicKey(priv).export({ format: "jwk" }) as Record<string, string>;
  return { privateKey: priv, jwk, alg: "ES256" };
}

// ------------------------------------------------------------------ tests

describe("directory and nonces", () => {
  it("the default directory lists every resource, without EAB", async () => {
    const res = await acme.request("GET", `${t.service.httpsUrl}/acme/directory`);
    const dir = expectOk(res);
    const base = `${t.service.httpsUrl}/acme`;
    expect(dir.newNonce).toBe(`${base}/new-nonce`);
    expect(dir.newAccount).toBe(`${base}/new-account`);
    expect(dir.newOrder).toBe(`${base}/new-order`);
    expect(dir.revokeCert).toBe(`${base}/revoke-cert`);
    expect(dir.keyChange).toBe(`${base}/key-change`);
    expect(dir.renewalInfo).toBe(`${base}/renewal-info`);
    expect(dir.meta.externalAccountRequired).toBe(false);
    expect(res.headers["content-type"]).toMatch(/^application\/json/);
  });

  it("the eab directory at /acme/eab/directory has its own URLs and requires EAB", async () => {
    const dir = expectOk(await eab.request("GET", `${t.service.httpsUrl}/acme/eab/directory`));
    const base = `${t.service.httpsUrl}/acme/eab`;
    for (const [k, p] of Object.entries({ newNonce: "new-nonce", newAccount: "new-account", newOrder: "new-order", revokeCert: "revoke-cert", keyChange: "key-change", renewalInfo: "renewal-info" })) {
      expect(dir[k], k).toBe(`${base}/${p}`);
    }
    expect(dir.meta.externalAccountRequired).toBe(true);
  });

  it('responses link their own directory, once, with rel="index"', async () => {
    const index = (r: AcmeResponse) => r.links.filter((l) => /rel="index"/.test(l));
    const d = `<${t.service.httpsUrl}/acme/directory>;rel="index"`;
    const e = `<${t.service.httpsUrl}/acme/eab/directory>;rel="index"`;
    expect(index(await acme.request("HEAD", acme.directory.newNonce))).toEqual([d]);
    expect(index(await acme.post(acme.directory.newAccount, newAccountKey("ES256"), { onlyReturnExisting: true }))).toEqual([d]);
    expect(index(await eab.request("HEAD", eab.directory.newNonce))).toEqual([e]);
    expect(index(await eab.request("GET", eab.directory.newNonce))).toEqual([e]);
    expect(index(await eab.post(eab.directory.newAccount, newAccountKey("ES256"), { termsOfServiceAgreed: true }))).toEqual([e]);
  });

  it("HEAD new-nonce is 200 and GET 204, no-store, each with a fresh nonce", async () => {
    const head = await acme.request("HEAD", acme.directory.newNonce);
    expectOk(head, 200);
    expect(head.headers["cache-control"]).toMatch(/no-store/);
    const get = await acme.request("GET", acme.directory.newNonce);
    expectOk(get, 204);
    expect(get.headers["cache-control"]).toMatch(/no-store/);
    expect(get.text).toBe("");
    const eabHead = await eab.request("HEAD", eab.directory.newNonce);
    expectOk(eabHead, 200);
  });

  it("an unknown ACME path is a 404 problem, still with a nonce", async () => {
    expectProblem(await acme.request("GET", `${t.service.httpsUrl}/acme/no-such-thing`), 404, "malformed");
  });

  it("a GET where POST-as-GET is required, or any method a resource does not take, is 405 malformed with Allow (§6.3)", async () => {
    const account = await accountA();
    const issued = await certA();
    const order = expectOk(await acme.postAs(account, issued.orderUrl, ""));
    const authz = expectOk(await acme.postAs(account, order.authorizations[0], ""));
    const postOnly = [account.url, `${account.url}/orders`, issued.orderUrl, order.finalize, order.authorizations[0], authz.challenges[0].url, issued.certUrl,
      acme.directory.newAccount, acme.directory.newOrder, acme.directory.revokeCert, acme.directory.keyChange];
    for (const url of postOnly) {
      for (const method of ["GET", "HEAD", "PUT", "DELETE"]) {
        const res = await acme.request(method, url);
        expect(res.status, `${method} ${url}: ${res.text}`).toBe(405);
        expect(res.headers["allow"], `${method} ${url}`).toBe("POST");
        expectFreshNonce(res);
        if (method !== "HEAD") expectProblem(res, 405, "malformed", method === "GET" ? /POST-as-GET/ : /not allowed/);
      }
    }
    for (const url of [acme.directory.newNonce, `${t.service.httpsUrl}/acme/directory`, `${acme.directory.renewalInfo}/${issued.certId}`]) {
      for (const method of ["POST", "PUT", "DELETE"]) {
        const res = await acme.request(method, url, method === "POST" ? { body: "{}", headers: { "content-type": "application/jose+json" } } : {});
        expectProblem(res, 405, "malformed", /allowed: GET, HEAD/);
        expect(res.headers["allow"], `${method} ${url}`).toBe("GET, HEAD");
      }
    }
    // The resources still answer the methods they take.
    expectOk(await acme.request("GET", `${t.service.httpsUrl}/acme/directory`));
    expectOk(await acme.request("HEAD", acme.directory.newNonce));
    expectOk(await acme.postAs(account, account.url, ""));
  });
});

describe("JWS and nonces", () => {
  it("a JWS url other than the request URL is unauthorized", async () => {
    const key = newAccountKey("ES256");
    const res = await acme.post(acme.directory.newAccount, key, { termsOfServiceAgreed: true }, { url: acme.directory.newOrder });
    expectProblem(res, 403, "unauthorized");
  });

  it("a reused nonce is badNonce, and the nonce that comes with the error works", async () => {
    const account = await accountA();
    const nonce = await acme.nonce();
    expectOk(await acme.postAs(account, account.url, "", { nonce }));
    const replay = await acme.postAs(account, account.url, "", { nonce });
    expectProblem(replay, 400, "badNonce");
    expectOk(await acme.postAs(account, account.url, "", { nonce: replay.nonce! }));
  });

  it("the very same request body replayed is badNonce", async () => {
    const account = await accountA();
    const body = JSON.stringify(await acme.sign(account.url, account.key, "", { kid: account.url }));
    const headers = { "content-type": "application/jose+json" };
    expectOk(await acme.request("POST", account.url, { body, headers }));
    expectProblem(await acme.request("POST", account.url, { body, headers }), 400, "badNonce");
  });

  it("an unknown nonce is badNonce", async () => {
    const account = await accountA();
    expectProblem(await acme.postAs(account, account.url, "", { nonce: crypto.randomBytes(16).toString("base64url") }), 400, "badNonce");
  });

  it("a JWS without a nonce is badNonce", async () => {
    const account = await accountA();
    expectProblem(await acme.postAs(account, account.url, "", { nonce: null }), 400, "badNonce");
  });

  it("an alg that does not fit the key is badSignatureAlgorithm, listing the algorithms", async () => {
    const key = newAccountKey("ES256");
    const p = expectProblem(await acme.post(acme.directory.newAccount, key, { termsOfServiceAgreed: true }, { alg: "ES384" }), 400, "badSignatureAlgorithm");
    expect(p.algorithms).toEqual(expect.arrayContaining(["ES256", "ES384", "RS256", "EdDSA"]));
    const account = await accountA();
    const q = expectProblem(await acme.postAs(account, acme.directory.newOrder, { identifiers: [ip("127.0.0.1")] }, { alg: "RS256" }), 400, "badSignatureAlgorithm");
    expect(q.algorithms).toContain("ES256");
    const mac = expectProblem(await acme.post(acme.directory.newAccount, key, {}, { alg: "HS256" }), 400, "badSignatureAlgorithm");
    expect(mac.algorithms).toContain("ES256");
  });

  it("a kid that names no account is accountDoesNotExist", async () => {
    const key = newAccountKey("ES256");
    const res = await acme.post(acme.directory.newOrder, key, { identifiers: [ip("127.0.0.1")] }, { kid: `${t.service.httpsUrl}/acme/acct/nosuchaccount` });
    expectProblem(res, 400, "accountDoesNotExist");
  });

  it("an account of one directory is unknown to the other", async () => {
    const account = await accountA();
    // kid of the default directory, sent to the eab directory
    const res = await eab.post(eab.directory.newOrder, account.key, { identifiers: [ip("127.0.0.1")] }, { kid: account.url });
    expectProblem(res, 400, "accountDoesNotExist");
  });

  it('a "jwk" where a "kid" is required (newOrder) is malformed', async () => {
    const account = await accountA();
    expectProblem(await acme.post(acme.directory.newOrder, account.key, { identifiers: [ip("127.0.0.1")] }), 400, "malformed");
    expectProblem(await acme.postAs(account, acme.directory.newOrder, { identifiers: [ip("127.0.0.1")] }, { useJwk: true }), 400, "malformed");
  });

  it("a body over 64 KiB is 413 malformed, with or without Content-Length", async () => {
    const account = await accountA();
    const big = { identifiers: [ip("127.0.0.1")], padding: "x".repeat(70 * 1024) };
    // A client of its own per request: see the keep-alive test below.
    for (const chunked of [false, true]) {
      const c = new AcmeClient(t.service.httpsUrl, t.rootPem);
      try {
        await c.init();
        expectProblem(await c.postAs(account, c.directory.newOrder, big, { chunked }), 413, "malformed");
      } finally {
        c.close();
      }
    }
  });

  it("after a 413, a keep-alive client's next request on the same connection is answered", async () => {
    // The server answers 413 without reading the body and says "keep-alive";
    // the client then reuses the connection, which the server must serve
    // (or it must answer "Connection: close" so the client does not reuse it).
    const account = await accountA();
    const c = new AcmeClient(t.service.httpsUrl, t.rootPem);
    try {
      await c.init();
      const big = { identifiers: [ip("127.0.0.1")], padding: "x".repeat(70 * 1024) };
      const res = await c.postAs(account, c.directory.newOrder, big);
      expectProblem(res, 413, "malformed");
      if (res.headers["connection"] !== "close") {
        const next = await c.request("HEAD", c.directory.newNonce).catch((err: Error) => err);
        expect(next instanceof Error ? `request failed: ${next.message}` : next.status).toBe(200);
      }
    } finally {
      c.close();
    }
  });

  it("a Content-Type other than application/jose+json is 415 malformed", async () => {
    const account = await accountA();
    expectProblem(await acme.postAs(account, account.url, "", { contentType: "application/json" }), 415, "malformed");
  });

  it("a body that is not a flattened JWS is malformed", async () => {
    const headers = { "content-type": "application/jose+json" };
    expectProblem(await acme.request("POST", acme.directory.newAccount, { body: "{not json", headers }), 400, "malformed");
    expectProblem(await acme.request("POST", acme.directory.newAccount, { body: "eyJh.eyJh.c2ln", headers }), 400, "malformed");
  });

  it("a signature that does not verify is malformed", async () => {
    const account = await accountA();
    const body = await acme.sign(account.url, account.key, "", { kid: account.url });
    body.signature = b64url(crypto.randomBytes(64));
    expectProblem(await acme.request("POST", account.url, { body: JSON.stringify(body), headers: { "content-type": "application/jose+json" } }), 400, "malformed");
  });

  it("POST-as-GET on an order with a non-empty payload is malformed", async () => {
    const account = await accountA();
    const created = await newOrder(acme, account, [ip("127.0.0.1")]);
    expectOk(created, 201);
    expectProblem(await acme.postAs(account, created.location!, {}), 400, "malformed");
    expect(expectOk(await acme.postAs(account, created.location!, "")).status).toBe("pending");
  });
});

describe("accounts", () => {
  it("newAccount creates (201 + Location), and the same key again gives the same account (200)", async () => {
    const key = newAccountKey("ES256");
    const first = await acme.post(acme.directory.newAccount, key, { termsOfServiceAgreed: true, contact: ["mailto:ops@example.com"] });
    const body = expectOk(first, 201);
    expect(first.location).toMatch(new RegExp(`^${t.service.httpsUrl}/acme/acct/[A-Za-z0-9_-]+$`));
    expect(body.status).toBe("valid");
    expect(body.contact).toEqual(["mailto:ops@example.com"]);
    expect(body.orders).toBe(`${first.location}/orders`);
    const again = await acme.post(acme.directory.newAccount, key, { termsOfServiceAgreed: true });
    expectOk(again, 200);
    expect(again.location).toBe(first.location);
    const existing = await acme.post(acme.directory.newAccount, key, { onlyReturnExisting: true });
    expectOk(existing, 200);
    expect(existing.location).toBe(first.location);
  });

  it("accounts with RSA and Ed25519 keys work too", async () => {
    for (const kind of ["RS256", "EdDSA", "ES384"] as const) {
      const key = newAccountKey(kind);
      const res = await acme.post(acme.directory.newAccount, key, { termsOfServiceAgreed: true });
      expectOk(res, 201);
      expect(expectOk(await acme.postAs({ key, url: res.location! }, res.location!, "")).status).toBe("valid");
    }
  });

  it("onlyReturnExisting for an unknown key is accountDoesNotExist", async () => {
    expectProblem(await acme.post(acme.directory.newAccount, newAccountKey("ES256"), { onlyReturnExisting: true }), 400, "accountDoesNotExist");
  });

  it("contact: update works, a non-mailto contact is unsupportedContact, a bad address invalidContact", async () => {
    const account = await createAccount(acme);
    const updated = expectOk(await acme.postAs(account, account.url, { contact: ["mailto:new@example.org"] }));
    expect(updated.contact).toEqual(["mailto:new@example.org"]);
    expect(expectOk(await acme.postAs(account, account.url, "")).contact).toEqual(["mailto:new@example.org"]);
    expectProblem(await acme.postAs(account, account.url, { contact: ["tel:+15551234"] }), 400, "unsupportedContact");
    expectProblem(await acme.postAs(account, account.url, { contact: ["mailto:not an address"] }), 400, "invalidContact");
    expectProblem(await acme.post(acme.directory.newAccount, newAccountKey("ES256"), { termsOfServiceAgreed: true, contact: ["https://example.com/"] }), 400, "unsupportedContact");
    expect(expectOk(await acme.postAs(account, account.url, "")).contact).toEqual(["mailto:new@example.org"]);
  });

  it("another account's URL is refused", async () => {
    const a = await accountA();
    const b = await accountB();
    expectProblem(await acme.postAs(b, a.url, ""), 403, "unauthorized");
  });

  it("a deactivated account's key is refused for everything", async () => {
    const account = await createAccount(acme);
    const res = expectOk(await acme.postAs(account, account.url, { status: "deactivated" }));
    expect(res.status).toBe("deactivated");
    expectProblem(await acme.postAs(account, account.url, ""), 403, "unauthorized");
    expectProblem(await newOrder(acme, account, [ip("127.0.0.1")]), 403, "unauthorized");
    expectProblem(await acme.postAs(account, account.url, { status: "valid" }), 403, "unauthorized");
  });

  it("newAccount with a deactivated account's key is unauthorized (RFC 8555 §7.3.6)", async () => {
    const account = await createAccount(acme);
    expectOk(await acme.postAs(account, account.url, { status: "deactivated" }));
    expectProblem(await acme.post(acme.directory.newAccount, account.key, { onlyReturnExisting: true }), 403, "unauthorized");
    expectProblem(await acme.post(acme.directory.newAccount, account.key, { termsOfServiceAgreed: true }), 403, "unauthorized");
  });

  it("keyChange rolls the account to a new key: the old key is refused, the new one works", async () => {
    const account = await createAccount(acme);
    const newKey = newAccountKey("ES256");
    const inner = signJws(newKey, { account: account.url, oldKey: account.key.jwk }, { url: acme.directory.keyChange });
    const res = await acme.postAs(account, acme.directory.keyChange, inner);
    expect(expectOk(res).status).toBe("valid");
    // The old key no longer signs for the account.
    expectProblem(await acme.postAs(account, account.url, ""), 400, "malformed");
    expectProblem(await acme.post(acme.directory.newAccount, account.key, { onlyReturnExisting: true }), 400, "accountDoesNotExist");
    // The new one does.
    const rolled = { key: newKey, url: account.url };
    expect(expectOk(await acme.postAs(rolled, account.url, "")).status).toBe("valid");
    const found = await acme.post(acme.directory.newAccount, newKey, { onlyReturnExisting: true });
    expectOk(found, 200);
    expect(found.location).toBe(account.url);
    expectOk(await newOrder(acme, rolled, [ip("127.0.0.9")]), 201);
  });

  it("keyChange: inner JWS errors are malformed", async () => {
    const account = await createAccount(acme);
    const newKey = newAccountKey("ES256");
    const wrongUrl = signJws(newKey, { account: account.url, oldKey: account.key.jwk }, { url: acme.directory.newOrder });
    expectProblem(await acme.postAs(account, acme.directory.keyChange, wrongUrl), 400, "malformed");
    const wrongOld = signJws(newKey, { account: account.url, oldKey: newAccountKey("ES256").jwk }, { url: acme.directory.keyChange });
    expectProblem(await acme.postAs(account, acme.directory.keyChange, wrongOld), 400, "malformed");
    // the account still has its key
    expectOk(await acme.postAs(account, account.url, ""));
  });

  it("keyChange to a key another account uses is 409 with that account's Location", async () => {
    const account = await createAccount(acme);
    const other = await createAccount(acme);
    const inner = signJws(other.key, { account: account.url, oldKey: account.key.jwk }, { url: acme.directory.keyChange });
    const res = await acme.postAs(account, acme.directory.keyChange, inner);
    expect(res.status, res.text).toBe(409);
    expect(res.body.type).toMatch(new RegExp(`^${ERR}`));
    expect(res.location).toBe(other.url);
    expectFreshNonce(res);
    expectOk(await acme.postAs(account, account.url, ""));
  });
});

describe("external account binding", () => {
  it("the eab directory refuses newAccount without a binding: externalAccountRequired", async () => {
    expectProblem(await eab.post(eab.directory.newAccount, newAccountKey("ES256"), { termsOfServiceAgreed: true }), 400, "externalAccountRequired");
  });

  it("a key made with the CLI binds a new account, which shows externalAccountBinding", async () => {
    const { kid, hmac } = await cliEabKey();
    const key = newAccountKey("ES256");
    const res = await eab.post(eab.directory.newAccount, key, {
      termsOfServiceAgreed: true,
      externalAccountBinding: signEab(kid, hmac, key.jwk, eab.directory.newAccount),
    });
    const body = expectOk(res, 201);
    expect(res.location).toMatch(new RegExp(`^${t.service.httpsUrl}/acme/eab/acct/`));
    expect(body.externalAccountBinding).toBeTruthy();
    expect(JSON.stringify(body.externalAccountBinding)).toContain(kid);
    expect(expectOk(await eab.postAs({ key, url: res.location! }, res.location!, "")).externalAccountBinding).toBeTruthy();
  });

  it("the database row holds the HMAC key sealed, with no bytes of what the admin was shown", async () => {
    const { kid, hmac } = await cliEabKey();
    const [row] = await t.service.ctx.store.db.select().from(acmeEabKeys).where(eq(acmeEabKeys.kid, kid));
    expect(row, kid).toBeDefined();
    const stored = row!.hmacKey;
    expect(stored).toMatch(/^v1:[A-Za-z0-9_-]+$/);
    expect(stored).not.toContain(hmac);
    const key = Buffer.from(hmac, "base64url");
    const decoded = Buffer.from(stored.slice(3), "base64url");
    // Not the key, nor any 8 bytes of it in what the row decodes to, nor any 11 characters of its text.
    for (let i = 0; i + 8 <= key.length; i++) expect(decoded.includes(key.subarray(i, i + 8)), `bytes ${i}..${i + 8} of the HMAC key`).toBe(false);
    for (let i = 0; i + 11 <= hmac.length; i++) expect(stored.includes(hmac.slice(i, i + 11)), `characters ${i}..${i + 11} of the HMAC key`).toBe(false);
    // And it still binds an account.
    const account = newAccountKey("ES256");
    expectOk(await eab.post(eab.directory.newAccount, account, { termsOfServiceAgreed: true, externalAccountBinding: signEab(kid, hmac, account.jwk, eab.directory.newAccount) }), 201);
  });

  it("an EAB key binds one account only", async () => {
    const { kid, hmac } = await cliEabKey();
    const k1 = newAccountKey("ES256");
    expectOk(await eab.post(eab.directory.newAccount, k1, { termsOfServiceAgreed: true, externalAccountBinding: signEab(kid, hmac, k1.jwk, eab.directory.newAccount) }), 201);
    const k2 = newAccountKey("ES256");
    expectProblem(
      await eab.post(eab.directory.newAccount, k2, { termsOfServiceAgreed: true, externalAccountBinding: signEab(kid, hmac, k2.jwk, eab.directory.newAccount) }),
      403,
      "unauthorized",
      new RegExp(`key ${kid} was already used: it bound an account at \\d{4}-.*ask the CA's admins for a new one`),
    );
    // Without the HMAC key, nothing tells that the identifier exists.
    const wrong = crypto.randomBytes(32).toString("base64url");
    expectProblem(
      await eab.post(eab.directory.newAccount, k2, { termsOfServiceAgreed: true, externalAccountBinding: signEab(kid, wrong, k2.jwk, eab.directory.newAccount) }),
      403,
      "unauthorized",
      /^externalAccountBinding key identifier is not known$/,
    );
  });

  it("a wrong HMAC is unauthorized, and does not use up the key", async () => {
    const { kid, hmac } = await cliEabKey();
    const key = newAccountKey("ES256");
    const wrong = crypto.randomBytes(32).toString("base64url");
    expectProblem(await eab.post(eab.directory.newAccount, key, { termsOfServiceAgreed: true, externalAccountBinding: signEab(kid, wrong, key.jwk, eab.directory.newAccount) }), 403, "unauthorized");
    // a binding of another key than the account's
    const other = newAccountKey("ES256");
    expectProblem(await eab.post(eab.directory.newAccount, key, { termsOfServiceAgreed: true, externalAccountBinding: signEab(kid, hmac, other.jwk, eab.directory.newAccount) }), 403, "unauthorized");
    expectOk(await eab.post(eab.directory.newAccount, key, { termsOfServiceAgreed: true, externalAccountBinding: signEab(kid, hmac, key.jwk, eab.directory.newAccount) }), 201);
  });

  it("an EAB key made for the default directory is refused by the eab directory, which names the key's directory", async () => {
    const { kid, hmac } = await cliEabKey("default");
    const key = newAccountKey("ES256");
    expectProblem(
      await eab.post(eab.directory.newAccount, key, { termsOfServiceAgreed: true, externalAccountBinding: signEab(kid, hmac, key.jwk, eab.directory.newAccount) }),
      403,
      "unauthorized",
      new RegExp(`key ${kid} is for the ACME directory "default", not "eab"`),
    );
    // Without the HMAC key, nothing tells that the identifier exists.
    const wrong = crypto.randomBytes(32).toString("base64url");
    expectProblem(
      await eab.post(eab.directory.newAccount, key, { termsOfServiceAgreed: true, externalAccountBinding: signEab(kid, wrong, key.jwk, eab.directory.newAccount) }),
      403,
      "unauthorized",
      /^externalAccountBinding key identifier is not known$/,
    );
    // It still binds an account where it belongs.
    expectOk(await acme.post(acme.directory.newAccount, key, { termsOfServiceAgreed: true, externalAccountBinding: signEab(kid, hmac, key.jwk, acme.directory.newAccount) }), 201);
  });
});

describe("orders", () => {
  it("127.0.0.1 by http-01: challenge, authorization valid, order ready, finalize, certificate chain that openssl verifies", async () => {
    const issued = await certA();
    const leaf = new crypto.X509Certificate(issued.leafPem);
    expect(leaf.subjectAltName).toMatch(/IP Address:127\.0\.0\.1/);
    const chain = pemBlocks(issued.chainText).slice(1).join("");
    const v = verify(t.rootPem, chain, issued.leafPem, ["-purpose", "sslserver"]);
    expect(v.ok, v.output).toBe(true);
    // The order lists the certificate; the account lists the order.
    const account = await accountA();
    const order = expectOk(await acme.postAs(account, issued.orderUrl, ""));
    expect(order.status).toBe("valid");
    expect(order.certificate).toBe(issued.certUrl);
    const orders = expectOk(await acme.postAs(account, `${account.url}/orders`, ""));
    expect(orders.orders).toContain(issued.orderUrl);
    // Only the ordering account downloads the certificate.
    expectProblem(await acme.postAs(await accountB(), issued.certUrl, ""), 404, "malformed");
  });

  it("order and authorization objects follow RFC 8555 §7.1.3-7.1.4", async () => {
    const account = await accountA();
    const created = await newOrder(acme, account, [ip("127.0.0.1")]);
    const order = expectOk(created, 201);
    expect(created.location).toMatch(new RegExp(`^${t.service.httpsUrl}/acme/order/`));
    expect(order.status).toBe("pending");
    expect(order.identifiers).toEqual([ip("127.0.0.1")]);
    expect(order.authorizations).toHaveLength(1);
    expect(order.finalize).toBe(`${created.location}/finalize`);
    expect(Date.parse(order.expires)).toBeGreaterThan(Date.now());
    const authz = expectOk(await acme.postAs(account, order.authorizations[0], ""));
    expect(authz.identifier).toEqual(ip("127.0.0.1"));
    expect(authz.status).toBe("pending");
    const types = authz.challenges.map((c: any) => c.type).sort();
    expect(types).toEqual(["http-01", "tls-alpn-01"]); // never dns-01 for an IP (RFC 8738 §7)
    for (const c of authz.challenges) {
      expect(c.status).toBe("pending");
      expect(c.token).toMatch(/^[A-Za-z0-9_-]{43,}$/);
    }
    // Another account does not see it.
    expectProblem(await acme.postAs(await accountB(), created.location!, ""), 404, "malformed");
    expectProblem(await acme.postAs(await accountB(), order.authorizations[0], ""), 404, "malformed");
  });

  it("finalize with a CSR for another name is badCSR, and the order stays ready", async () => {
    const account = await accountA();
    const { url, order } = await readyOrder();
    const { csr } = makeCsr({ subject: "/CN=other.example.test", san: "DNS:other.example.test" });
    expectProblem(await acme.postAs(account, order.finalize, { csr: pemToB64url(csr) }), 400, "badCSR");
    const extra = makeCsr({ subject: "/CN=127.0.0.1", san: "IP:127.0.0.1,IP:127.0.0.2" });
    expectProblem(await acme.postAs(account, order.finalize, { csr: pemToB64url(extra.csr) }), 400, "badCSR");
    expectProblem(await acme.postAs(account, order.finalize, { csr: "not*base64" }), 400, "malformed");
    expect(expectOk(await acme.postAs(account, url, "")).status).toBe("ready");
    // and a right CSR still finalizes it
    const good = makeCsr({ subject: "/CN=127.0.0.1", san: "IP:127.0.0.1" });
    const fin = expectOk(await acme.postAs(account, order.finalize, { csr: pemToB64url(good.csr) }));
    expect(["valid", "processing"]).toContain(fin.status);
  });

  it("an order of two identifiers validated at once: both authorizations valid, then the order ready, its authorizations listed the same way throughout", async () => {
    // http-01 for ::1 too: the same responder on the same port.
    const v6 = http.createServer((req, res) => http01.emit("request", req, res));
    await listen(v6, "::1", (http01.address() as net.AddressInfo).port);
    try {
      const account = await accountA();
      const created = await newOrder(acme, account, [ip("127.0.0.1"), ip("::1")]);
      const order = expectOk(created, 201);
      expect(order.authorizations).toHaveLength(2);
      expect(expectOk(await acme.postAs(account, created.location!, "")).authorizations).toEqual(order.authorizations);
      const challenges: any[] = [];
      for (const url of order.authorizations) {
        const ch = expectOk(await acme.postAs(account, url, "")).challenges.find((x: any) => x.type === "http-01");
        challengeBodies.set(ch.token, keyAuthorization(ch.token, account.key.jwk));
        challenges.push(ch);
      }
      // Both started before either is polled: the two validations run at the same time, and whichever writes last makes the order ready.
      await Promise.all(challenges.map(async (ch) => expectOk(await acme.postAs(account, ch.url, {}))));
      for (const url of order.authorizations) {
        const { res } = await acme.poll(account, url, (b) => b.status !== "pending");
        expect(res.body.status, JSON.stringify(res.body)).toBe("valid");
      }
      // Every authorization read valid: the order is ready without waiting.
      const now = expectOk(await acme.postAs(account, created.location!, ""));
      expect(now.status).toBe("ready");
      expect(now.authorizations).toEqual(order.authorizations);
    } finally {
      await close(v6);
    }
  });

  it("finalize before the order is ready is orderNotReady", async () => {
    const account = await accountA();
    const created = await newOrder(acme, account, [ip("127.0.0.1")]);
    const order = expectOk(created, 201);
    const { csr } = makeCsr({ subject: "/CN=127.0.0.1", san: "IP:127.0.0.1" });
    expectProblem(await acme.postAs(account, order.finalize, { csr: pemToB64url(csr) }), 403, "orderNotReady");
  });

  it("a name this CA does not serve is rejectedIdentifier, with a subproblem naming it", async () => {
    const account = await accountA();
    const p = expectProblem(await newOrder(acme, account, [{ type: "dns", value: "www.google.com" }]), 400, "rejectedIdentifier");
    expect(p.subproblems).toEqual([expect.objectContaining({ type: `${ERR}rejectedIdentifier`, identifier: { type: "dns", value: "www.google.com" } })]);
    const two = expectProblem(await newOrder(acme, account, [{ type: "dns", value: "app.test" }, ip("8.8.8.8"), { type: "dns", value: "www.google.com" }]), 400, "rejectedIdentifier");
    expect(two.subproblems.map((s: any) => s.identifier)).toEqual([ip("8.8.8.8"), { type: "dns", value: "www.google.com" }]);
  });

  it("a dns identifier that is an IP address is malformed", async () => {
    const account = await accountA();
    const p = expectProblem(await newOrder(acme, account, [{ type: "dns", value: "127.0.0.1" }]), 400, "malformed");
    expect(p.subproblems?.[0]?.identifier).toEqual({ type: "dns", value: "127.0.0.1" });
  });

  it("an identifier type other than dns and ip is unsupportedIdentifier", async () => {
    const account = await accountA();
    expectProblem(await newOrder(acme, account, [{ type: "email", value: "a@example.com" }]), 400, "unsupportedIdentifier");
  });

  it("an order without identifiers, or with notAfter, is malformed", async () => {
    const account = await accountA();
    expectProblem(await newOrder(acme, account, []), 400, "malformed");
    expectProblem(await acme.postAs(account, acme.directory.newOrder, {}), 400, "malformed");
    expectProblem(await newOrder(acme, account, [ip("127.0.0.1")], { notAfter: new Date(Date.now() + 86_400_000).toISOString() }), 400, "malformed");
  });

  it("a challenge POST answers with the validation's outcome when it ends within a second, else processing with Retry-After", async () => {
    const account = await accountA();
    const post = async (delayMs: number) => {
      const created = await newOrder(acme, account, [ip("127.0.0.1")]);
      const authzUrl = expectOk(created, 201).authorizations[0];
      const ch = expectOk(await acme.postAs(account, authzUrl, "")).challenges.find((x: any) => x.type === "http-01");
      challengeBodies.set(ch.token, keyAuthorization(ch.token, account.key.jwk));
      challengeDelays.set(ch.token, delayMs);
      const started = await acme.postAs(account, ch.url, {});
      return { view: expectOk(started), started, authzUrl, orderUrl: created.location! };
    };
    // A loopback http-01 answer, at once: the POST says valid, and the authorization and order read so without a poll.
    const quick = await post(0);
    expect(quick.view.status, JSON.stringify(quick.view)).toBe("valid");
    expect(Date.parse(quick.view.validated)).toBeGreaterThan(0);
    expect(quick.started.retryAfter).toBeUndefined();
    expect(expectOk(await acme.postAs(account, quick.authzUrl, "")).status).toBe("valid");
    expect(expectOk(await acme.postAs(account, quick.orderUrl, "")).status).toBe("ready");
    // An answer that takes 1.5 s: the POST stops waiting and says processing, with when to look again.
    const slow = await post(1_500);
    expect(slow.view.status).toBe("processing");
    expect(slow.started.retryAfter).toBeGreaterThan(0);
    const { res } = await acme.poll(account, slow.authzUrl, (b) => b.status !== "pending");
    expect(res.body.status).toBe("valid");
  });

  it("a wrong http-01 answer: challenge invalid with incorrectResponse, authorization and order invalid", async () => {
    const account = await accountA();
    const created = await newOrder(acme, account, [ip("127.0.0.1")]);
    const order = expectOk(created, 201);
    const [authz] = await answerHttp01(acme, account, order, () => "not-the-key-authorization");
    expect(authz.status).toBe("invalid");
    const ch = authz.challenges.find((c: any) => c.type === "http-01");
    expect(ch.status).toBe("invalid");
    expect(ch.error.type).toBe(`${ERR}incorrectResponse`);
    expect(ch.error.status).toBe(403);
    const final = expectOk(await acme.postAs(account, created.location!, ""));
    expect(final.status).toBe("invalid");
    expect(final.error?.type).toBe(`${ERR}incorrectResponse`);
    // The challenge itself reads the same
    const chRes = await acme.postAs(account, ch.url, "");
    expect(expectOk(chRes).error.type).toBe(`${ERR}incorrectResponse`);
    // and cannot be retried
    expect(expectOk(await acme.postAs(account, ch.url, {})).status).toBe("invalid");
  });
});

describe("http-01 redirects", () => {
  it("a redirect to the CA's own plain-HTTP port is refused, named, and what the CA serves there is not echoed", async () => {
    const account = await accountA();
    const created = await newOrder(acme, account, [ip("127.0.0.1")]);
    const order = expectOk(created, 201);
    const chainUrl = `http://127.0.0.1:${caHttpPort}/ca/chain.pem`;
    expect((await fetch(chainUrl)).status).toBe(200); // the chain really is served there
    const [authz] = await answerHttp01(acme, account, order, () => ({ redirect: chainUrl }));
    expect(authz.status).toBe("invalid");
    const ch = authz.challenges.find((c: any) => c.type === "http-01");
    expect(ch.error.type).toBe(`${ERR}connection`);
    expect(ch.error.detail).toContain(`Refused redirect`);
    expect(ch.error.detail).toContain(chainUrl);
    expect(ch.error.detail).toContain(`the CA's own listener 127.0.0.1:${caHttpPort}`);
    const final = expectOk(await acme.postAs(account, created.location!, ""));
    expect(final.status).toBe("invalid");
    for (const text of [JSON.stringify(authz), JSON.stringify(final)]) expect(text).not.toContain("BEGIN CERTIFICATE");
  });
});

describe("authorization deactivation", () => {
  it("deactivating an authorization (RFC 8555 §7.5.2) invalidates its pending order", async () => {
    const account = await accountA();
    const created = await newOrder(acme, account, [ip("127.0.0.1")]);
    const order = expectOk(created, 201);
    expectProblem(await acme.postAs(account, order.authorizations[0], { status: "valid" }), 400, "malformed");
    const authz = expectOk(await acme.postAs(account, order.authorizations[0], { status: "deactivated" }));
    expect(authz.status).toBe("deactivated");
    expect(expectOk(await acme.postAs(account, created.location!, "")).status).toBe("invalid");
    expectProblem(await acme.postAs(await accountB(), order.authorizations[0], { status: "deactivated" }), 404, "malformed");
  });
});

describe("revocation", () => {
  const revoke = async (account: Account | AccountKey, certPem: string, reason?: number) => {
    const payload = { certificate: pemToB64url(certPem), ...(reason === undefined ? {} : { reason }) };
    return "url" in account ? acme.postAs(account, acme.directory.revokeCert, payload) : acme.post(acme.directory.revokeCert, account, payload);
  };
  const rp = new RelyingParty();
  afterAll(() => rp.cleanup());
  const REASON_NAMES: Record<number, string> = { 1: "keyCompromise", 4: "superseded", 5: "cessationOfOperation" };
  const stored = async (leafPem: string) => (await certificateBySerial(t.service.ctx.store.db, new x509.X509Certificate(leafPem).serialNumber.toLowerCase()))!;
  /** What openssl ocsp, as a relying party, says about the certificate: good or revoked, and why. */
  const ocsp = async (issued: Issued) => (await rp.ocsp(`${t.service.httpUrl}/ocsp`, pemBlocks(issued.chainText)[1]!, t.rootPem, { certPem: issued.leafPem })).out;

  /** The CA holds the certificate as revoked for that reason, and OCSP says so (within 5 s: its answers are cached briefly). */
  async function expectRevoked(issued: Issued, reason: number): Promise<void> {
    const row = await stored(issued.leafPem);
    expect(row.status).toBe("revoked");
    expect(row.revocationReason).toBe(reason);
    expect(row.revokedAt).toBeInstanceOf(Date);
    const out = await waitFor("OCSP says revoked", async () => ((await ocsp(issued)).match(/cert\.pem: revoked[\s\S]*/)?.[0]), { timeoutMs: 5_000, intervalMs: 200 });
    expect(out).toMatch(new RegExp(`Reason: ${REASON_NAMES[reason]}`));
    expect(await ocsp(issued)).toMatch(/Response verify OK/);
  }

  /** A refused revocation changed nothing (when the certificate was still good before it). */
  async function expectStillGood(issued: Issued): Promise<void> {
    const row = await stored(issued.leafPem);
    expect(row.status).toBe("valid");
    expect(row.revokedAt).toBeNull();
    const out = await ocsp(issued);
    expect(out).toMatch(/Response verify OK/);
    expect(out).toMatch(/cert\.pem: good/);
  }

  it("another account, without authorizations for its names, cannot revoke a certificate", async () => {
    const issued = await certD();
    expectProblem(await revoke(await accountB(), issued.leafPem, 4), 403, "unauthorized");
    await expectStillGood(issued);
  });

  it("a reason ACME clients may not give (7, unused) is badRevocationReason", async () => {
    const issued = await certD();
    expectProblem(await revoke(await accountA(), issued.leafPem, 7), 400, "badRevocationReason");
    expectProblem(await revoke(await accountA(), issued.leafPem, 2), 400, "badRevocationReason"); // cACompromise
    await expectStillGood(issued);
  });

  it("a certificate this CA did not issue is refused", async () => {
    const account = await accountA();
    // the CA's own root is not a certificate an account can revoke
    expectProblem(await revoke(account, t.rootPem, 4), 404, "malformed");
  });

  it("an account holding valid authorizations for all the certificate's names may revoke it", async () => {
    const issued = await certD();
    const holder = await createAccount(acme);
    const created = await newOrder(acme, holder, [ip("127.0.0.1")]);
    const [authz] = await answerHttp01(acme, holder, expectOk(created, 201));
    expect(authz.status).toBe("valid");
    expectOk(await revoke(holder, issued.leafPem, 5), 200);
    await expectRevoked(issued, 5);
  });

  it("the ordering account revokes (reason 4); again is alreadyRevoked", async () => {
    const issued = await certA();
    const account = await accountA();
    const res = await revoke(account, issued.leafPem, 4);
    expectOk(res, 200);
    await expectRevoked(issued, 4);
    expectProblem(await revoke(account, issued.leafPem, 4), 400, "alreadyRevoked");
    await expectRevoked(issued, 4);
  });

  it("the certificate's own key revokes it (jwk = certificate key)", async () => {
    const issued = await certB();
    const certKey = keyFromPem(issued.keyPem);
    // another key is refused
    expectProblem(await revoke(newAccountKey("ES256"), issued.leafPem, 1), 403, "unauthorized");
    await expectStillGood(issued);
    expectOk(await revoke(certKey, issued.leafPem, 1), 200);
    await expectRevoked(issued, 1);
    expectProblem(await revoke(certKey, issued.leafPem, 1), 400, "alreadyRevoked");
  });
});

describe("renewal information (RFC 9773)", () => {
  it("a fresh certificate's window lies within its validity, with Retry-After", async () => {
    const { leafPem, certId } = await certC();
    const res = await acme.request("GET", `${acme.directory.renewalInfo}/${certId}`);
    const body = expectOk(res);
    const leaf = new crypto.X509Certificate(leafPem);
    const notBefore = Date.parse(leaf.validFrom);
    const notAfter = Date.parse(leaf.validTo);
    const start = Date.parse(body.suggestedWindow.start);
    const end = Date.parse(body.suggestedWindow.end);
    expect(start).toBeGreaterThan(Date.now());
    expect(start).toBeGreaterThanOrEqual(notBefore);
    expect(end).toBeGreaterThan(start);
    expect(end).toBeLessThanOrEqual(notAfter);
    expect(res.retryAfter).toBeGreaterThan(0);
  });

  it("a revoked certificate's window is in the past", async () => {
    const { certId, leafPem } = await certA();
    // revoked in the revocation tests; make sure when run alone
    const revoked = await acme.postAs(await accountA(), acme.directory.revokeCert, { certificate: pemToB64url(leafPem), reason: 4 });
    if (revoked.status !== 200) expectProblem(revoked, 400, "alreadyRevoked");
    const res = await acme.request("GET", `${acme.directory.renewalInfo}/${certId}`);
    const body = expectOk(res);
    expect(Date.parse(body.suggestedWindow.end)).toBeLessThanOrEqual(Date.now());
    expect(Date.parse(body.suggestedWindow.start)).toBeLessThan(Date.parse(body.suggestedWindow.end));
    expect(res.retryAfter).toBeGreaterThan(0);
  });

  it("a malformed certID is malformed; an unknown one 404", async () => {
    expectProblem(await acme.request("GET", `${acme.directory.renewalInfo}/not-a-cert-id`), 400, "malformed");
    expectProblem(await acme.request("GET", `${acme.directory.renewalInfo}/${b64url(crypto.randomBytes(20))}.${b64url(crypto.randomBytes(16))}`), 404, "malformed");
    // the right serial under another AKI is not that certificate
    const { certId } = await certC();
    expectProblem(await acme.request("GET", `${acme.directory.renewalInfo}/${b64url(crypto.randomBytes(20))}.${certId.split(".")[1]}`), 404, "malformed");
  });

  it('newOrder "replaces" another account\'s certificate is refused; the owner\'s replaces once', async () => {
    const { certId } = await certC();
    expectProblem(await newOrder(acme, await accountB(), [ip("127.0.0.1")], { replaces: certId }), 403, "unauthorized");
    const first = await newOrder(acme, await accountA(), [ip("127.0.0.1")], { replaces: certId });
    expect(expectOk(first, 201).replaces).toBe(certId);
    expectProblem(await newOrder(acme, await accountA(), [ip("127.0.0.1")], { replaces: certId }), 409, "alreadyReplaced");
    expectProblem(await newOrder(acme, await accountA(), [ip("127.0.0.1")], { replaces: "garbage" }), 400, "malformed");
  });

  it('"replaces" a certificate that shares no identifier with the order is refused (RFC 9773 §5 SHOULD)', async () => {
    const { certId } = await certB(); // for 127.0.0.1
    const res = await newOrder(acme, await accountA(), [ip("127.0.0.77")], { replaces: certId });
    expectProblem(res, 400, "malformed", /shares no identifier/);
  });
});

describe("rate limits", () => {
  it("the eab directory's small limits: per identifier (1) then per account (2), 429 rateLimited with Retry-After", async () => {
    const account = await createEabAccount();
    expectOk(await newOrder(eab, account, [ip("127.0.0.50")]), 201);
    const perIdentifier = await newOrder(eab, account, [ip("127.0.0.50")]);
    expectProblem(perIdentifier, 429, "rateLimited");
    expect(perIdentifier.retryAfter).toBeGreaterThan(0);
    expectOk(await newOrder(eab, account, [ip("127.0.0.51")]), 201);
    const perAccount = await newOrder(eab, account, [ip("127.0.0.52")]);
    expectProblem(perAccount, 429, "rateLimited");
    expect(perAccount.retryAfter).toBeGreaterThan(0);
  });
});

describe("expiry and clean-up", () => {
  it("expires pending work after 7 days and purges orders 30 days later, never certificates", async () => {
    const account = await createAccount(acme);
    const pending = await newOrder(acme, account, [ip("127.0.0.90")]);
    expectOk(pending, 201);
    const issued = await issue(account);
    const db = t.service.ctx.store.db;
    const leafSerial = new x509.X509Certificate(issued.leafPem).serialNumber.toLowerCase();

    const week = await cleanUpAcme(db, new Date(Date.now() + 8 * 86_400_000));
    expect(week.expired).toBeGreaterThanOrEqual(2); // at least the pending order and its authorization
    expect(week.nonces).toBeGreaterThan(0); // every nonce handed out so far has expired by then
    expectProblem(await acme.postAs(account, pending.location!, ""), 400, "badNonce"); // the client's saved nonce is gone
    const order = expectOk(await acme.postAs(account, pending.location!, ""));
    expect(order.status).toBe("invalid");
    const authz = expectOk(await acme.postAs(account, order.authorizations[0], ""));
    expect(authz.status).toBe("expired");

    const later = await cleanUpAcme(db, new Date(Date.now() + 40 * 86_400_000));
    expect(later.purged).toBeGreaterThanOrEqual(2);
    await acme.request("HEAD", acme.directory.newNonce); // the saved nonce is gone again
    expectProblem(await acme.postAs(account, pending.location!, ""), 404, "malformed");
    expectProblem(await acme.postAs(account, issued.orderUrl, ""), 404, "malformed");
    expect((await certificateBySerial(db, leafSerial))?.certificatePem).toBe(issued.leafPem);
  });
});

describe("nonces across the whole run", () => {
  it("every ACME response carried a Replay-Nonce never handed out before", () => {
    expect(AcmeClient.responses).toBeGreaterThan(0);
    expect(AcmeClient.missingNonces).toEqual([]);
    expect(AcmeClient.repeatedNonces).toEqual([]);
  });
});
