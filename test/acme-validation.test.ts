/**
 * ACME challenge validators against real servers on loopback: node http/https
 * and tls servers started here, and pebble-challtestsrv as the DNS server
 * (names resolve to 127.0.0.1, TXT records set through its management API).
 */
import { spawn, type ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import dgram from "node:dgram";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import * as x509 from "@peculiar/x509";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { reverseName } from "../src/acme/validation/common.ts";
import { validateDns01 } from "../src/acme/validation/dns-01.ts";
import { validateHttp01 } from "../src/acme/validation/http-01.ts";
import { validateChallenge } from "../src/acme/validation/index.ts";
import { ACME_IDENTIFIER_OID, validateTlsAlpn01 } from "../src/acme/validation/tls-alpn-01.ts";
import type { ValidationConfig, ValidationResult } from "../src/acme/validation/types.ts";
import { freePort, waitForPort } from "./helpers/ports.ts";

const webcrypto = crypto.webcrypto as unknown as Crypto;
const b64u = (n: number) => crypto.randomBytes(n).toString("base64url");
const TOKEN = b64u(32);
const KEY_AUTH = `${TOKEN}.${b64u(32)}`;
const CHALLENGE_PATH = `/.well-known/acme-challenge/${TOKEN}`;
const loopback4 = { type: "ip", value: "127.0.0.1" } as const;

function listen(server: net.Server, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => resolve((server.address() as net.AddressInfo).port));
  });
}
const close = (server: net.Server) => new Promise<void>((resolve) => server.close(() => resolve()));



/** Waits (bounded) until a server has no open connections: the validators must not leave sockets behind. */
async function expectNoConnections(server: net.Server): Promise<void> {
  const count = () => new Promise<number>((resolve) => server.getConnections((_e, n) => resolve(n)));
  for (let i = 0; i < 40 && (await count()) > 0; i++) await new Promise((r) => setTimeout(r, 25));
  expect(await count(), "connections left open").toBe(0);
}

function expectError(r: ValidationResult, type: string, detail?: RegExp): string {
  expect(r.ok, JSON.stringify(r)).toBe(false);
  if (r.ok) throw new Error("unreachable");
  expect(r.error.type, r.error.detail).toBe(type);
  if (detail) expect(r.error.detail).toMatch(detail);
  return r.error.detail;
}

// ---------------------------------------------------------------- DNS server

let challtestsrv: ChildProcess;
let dnsPort: number;
let mgmtPort: number;
let challtestsrvLog = "";

async function manage(endpoint: string, body: object): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${mgmtPort}/${endpoint}`, { method: "POST", body: JSON.stringify(body) });
  expect(res.status).toBe(200);
}

beforeAll(async () => {
  dnsPort = await freePort();
  mgmtPort = await freePort();
  challtestsrv = spawn(
    "pebble-challtestsrv",
    ["-dns01", `127.0.0.1:${dnsPort}`, "-http01", "", "-https01", "", "-tlsalpn01", "",
      "-management", `127.0.0.1:${mgmtPort}`, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  challtestsrv.stdout!.on("data", (d) => (challtestsrvLog += d));
  challtestsrv.stderr!.on("data", (d) => (challtestsrvLog += d));
  try {
    await waitForPort(dnsPort); // its TCP DNS listener; UDP opens alongside
    await waitForPort(mgmtPort); // the management API starts last
  } catch (err) {
    throw new Error(`pebble-challtestsrv did not start: ${err}\n${challtestsrvLog}`);
  }
});

afterAll(() => {
  challtestsrv?.kill();
});

const baseCfg = (): ValidationConfig => ({
  httpPort: 0,
  tlsAlpnPort: 0,
  resolvers: [`127.0.0.1:${dnsPort}`],
  timeoutMs: 3000,
  maxRedirects: 10,
  ownEndpoints: { listeners: [], urls: [] },
});

// ------------------------------------------------------------------ http-01

describe("http-01", () => {
  type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;
  const routes = new Map<string, Handler>();
  const hits: Array<{ path: string; host: string | undefined }> = [];
  const server = http.createServer((req, res) => {
    hits.push({ path: req.url ?? "", host: req.headers.host });
    const handler = routes.get(req.url ?? "");
    if (handler) handler(req, res);
    else res.writeHead(404).end("not found");
  });
  let cfg: ValidationConfig;
  const serve = (body: string | Buffer): Handler => (_req, res) => res.writeHead(200).end(body);
  const redirect = (status: number, location: string): Handler => (_req, res) => res.writeHead(status, { location }).end();

  beforeAll(async () => {
    cfg = { ...baseCfg(), httpPort: await listen(server, "127.0.0.1") };
  });
  afterEach(async () => {
    routes.clear();
    hits.length = 0;
    await expectNoConnections(server);
  });
  afterAll(() => close(server));

  it("accepts the key authorization with trailing whitespace, via validateChallenge", async () => {
    routes.set(CHALLENGE_PATH, serve(`${KEY_AUTH} \r\n\t`));
    expect(await validateChallenge("http-01", loopback4, TOKEN, KEY_AUTH, cfg)).toEqual({ ok: true });
    expect(hits).toEqual([{ path: CHALLENGE_PATH, host: `127.0.0.1:${cfg.httpPort}` }]);
  });

  it("rejects a wrong body and quotes its start safely", async () => {
    routes.set(CHALLENGE_PATH, serve(Buffer.from("wrong-\x00\x1b[31m\"body\"")));
    const detail = expectError(await validateHttp01(loopback4, TOKEN, KEY_AUTH, cfg), "incorrectResponse", /wrong-/);
    expect(detail).toContain("\\x00\\x1b[31m");
    expect(detail).not.toMatch(/[\x00-\x1f]/);
  });

  it("rejects the key authorization with extra leading text", async () => {
    routes.set(CHALLENGE_PATH, serve(` ${KEY_AUTH}`));
    expectError(await validateHttp01(loopback4, TOKEN, KEY_AUTH, cfg), "incorrectResponse");
  });

  it("stops reading a huge body", async () => {
    routes.set(CHALLENGE_PATH, serve(KEY_AUTH + " ".repeat(1 << 20)));
    expectError(await validateHttp01(loopback4, TOKEN, KEY_AUTH, cfg), "incorrectResponse", /longer than 4096 bytes/);
  });

  it("reports a 404 with its status", async () => {
    expectError(await validateHttp01(loopback4, TOKEN, KEY_AUTH, cfg), "unauthorized", /HTTP 404/);
  });

  it("rejects a non-200 status even with the right body", async () => {
    routes.set(CHALLENGE_PATH, (_req, res) => res.writeHead(202).end(KEY_AUTH));
    expectError(await validateHttp01(loopback4, TOKEN, KEY_AUTH, cfg), "unauthorized", /HTTP 202/);
  });

  it("follows a redirect chain on the same server", async () => {
    routes.set(CHALLENGE_PATH, redirect(302, "/step1"));
    routes.set("/step1", redirect(301, `http://127.0.0.1:${cfg.httpPort}/step2`));
    routes.set("/step2", redirect(307, "step3"));
    routes.set("/step3", serve(KEY_AUTH));
    expect(await validateHttp01(loopback4, TOKEN, KEY_AUTH, cfg)).toEqual({ ok: true });
    expect(hits.map((h) => h.path)).toEqual([CHALLENGE_PATH, "/step1", "/step2", "/step3"]);
  });

  it("refuses a redirect to ftp:// and names the scheme", async () => {
    routes.set(CHALLENGE_PATH, redirect(302, "ftp://127.0.0.1/key"));
    expectError(await validateHttp01(loopback4, TOKEN, KEY_AUTH, cfg), "connection", /"ftp"/);
    expect(hits).toHaveLength(1);
  });

  it("stops a redirect loop after maxRedirects", async () => {
    routes.set(CHALLENGE_PATH, redirect(302, "/loop"));
    routes.set("/loop", redirect(302, "/loop"));
    const r = await validateHttp01(loopback4, TOKEN, KEY_AUTH, { ...cfg, maxRedirects: 3 });
    expectError(r, "connection", /Too many redirects \(more than 3\)/);
    expect(hits).toHaveLength(4); // the first request and 3 redirects followed
  });

  it("follows a redirect to https without verifying the certificate, keeping the named port", async () => {
    const { key, cert } = await makeCert({ sans: [{ type: "dns", value: "unrelated.invalid" }] });
    const tlsServer = https.createServer({ key, cert }, (req, res) =>
      req.url === "/secure" ? res.writeHead(200).end(KEY_AUTH) : res.writeHead(404).end(),
    );
    const httpsPort = await listen(tlsServer, "127.0.0.1");
    try {
      routes.set(CHALLENGE_PATH, redirect(302, `https://127.0.0.1:${httpsPort}/secure`));
      // The HTTPS port a redirect may name is the tls-alpn-01 port (443 in production).
      expect(await validateHttp01(loopback4, TOKEN, KEY_AUTH, { ...cfg, tlsAlpnPort: httpsPort })).toEqual({ ok: true });
    } finally {
      await close(tlsServer);
    }
  });

  describe("redirect limits (RFC 8555 §8.3, §10.2) and the CA's own listeners", () => {
    /** Stands in for the CA's plain-HTTP listener: serves a certificate chain, counts requests. */
    let caPort: number;
    let caRequests = 0;
    let chainPem: string;
    const ca = http.createServer((req, res) => {
      caRequests++;
      res.writeHead(200, { "content-type": "application/pem-certificate-chain" }).end(chainPem);
    });
    beforeAll(async () => {
      const { cert } = await makeCert({ sans: [{ type: "dns", value: "ca.example.test" }] });
      chainPem = cert + cert;
      caPort = await listen(ca, "127.0.0.1");
    });
    afterEach(() => (caRequests = 0));
    afterAll(() => close(ca));

    /** A config in which the "CA" port passes the port rule (as the HTTPS port), so only the own-listener rule stands in the way. */
    const withCa = (listeners: Array<{ address: string; port: number }>, urls: string[] = []): ValidationConfig => ({
      ...cfg,
      tlsAlpnPort: caPort,
      ownEndpoints: { listeners, urls },
    });

    it("refuses a redirect to the CA's own plain-HTTP listener, names it, and echoes nothing served there", async () => {
      routes.set(CHALLENGE_PATH, redirect(302, `http://127.0.0.1:${caPort}/ca/chain.pem`));
      const r = await validateHttp01(loopback4, TOKEN, KEY_AUTH, withCa([{ address: "127.0.0.1", port: caPort }]));
      const detail = expectError(r, "connection", /Refused redirect/);
      expect(detail).toContain(`http://127.0.0.1:${caPort}/ca/chain.pem`);
      expect(detail).toContain(`the CA's own listener 127.0.0.1:${caPort}`);
      expect(detail).not.toContain("BEGIN CERTIFICATE");
      expect(caRequests).toBe(0);
    });

    it("refuses a name that resolves to a CA listener bound to every address (0.0.0.0 or ::)", async () => {
      // challtestsrv resolves every .test name to 127.0.0.1.
      routes.set(CHALLENGE_PATH, redirect(302, `http://sneaky.example.test:${caPort}/ca/chain.pem`));
      for (const address of ["0.0.0.0", "::"]) {
        const r = await validateHttp01(loopback4, TOKEN, KEY_AUTH, withCa([{ address, port: caPort }]));
        expectError(r, "connection", new RegExp(`the CA's own listener \\[?${address.replace(/\./g, "\\.")}\\]?:${caPort}`));
      }
      expect(caRequests).toBe(0);
    });

    it("refuses the CA's public URL by name, wherever it resolves", async () => {
      routes.set(CHALLENGE_PATH, redirect(302, `http://ca.example.test:${caPort}/ca/chain.pem`));
      const r = await validateHttp01(loopback4, TOKEN, KEY_AUTH, withCa([], [`http://ca.example.test:${caPort}`]));
      expectError(r, "connection", new RegExp(`the CA's public URL http://ca\\.example\\.test:${caPort}`));
      expect(caRequests).toBe(0);
    });

    it("refuses the first request too when the identifier's http-01 port is the CA's own", async () => {
      const r = await validateHttp01(loopback4, TOKEN, KEY_AUTH, { ...withCa([{ address: "127.0.0.1", port: caPort }]), httpPort: caPort });
      expectError(r, "connection", /Refused request to http:\/\/127\.0\.0\.1:\d+\/\.well-known\/acme-challenge\//);
      expect(caRequests).toBe(0);
    });

    it("a listener elsewhere, or on another port, does not refuse a legitimate redirect", async () => {
      routes.set(CHALLENGE_PATH, redirect(302, "/moved"));
      routes.set("/moved", serve(KEY_AUTH));
      const elsewhere = withCa([{ address: "127.0.0.2", port: cfg.httpPort }, { address: "0.0.0.0", port: caPort }], ["https://ca.example.test"]);
      expect(await validateHttp01(loopback4, TOKEN, KEY_AUTH, elsewhere)).toEqual({ ok: true });
    });

    it("refuses a redirect to a port other than the http-01 and HTTPS ports, and names it", async () => {
      const other = http.createServer((_req, res) => res.writeHead(200).end(KEY_AUTH));
      const otherPort = await listen(other, "127.0.0.1");
      let otherRequests = 0;
      other.on("request", () => otherRequests++);
      try {
        routes.set(CHALLENGE_PATH, redirect(302, `http://127.0.0.1:${otherPort}/key`));
        const r = await validateHttp01(loopback4, TOKEN, KEY_AUTH, cfg);
        expectError(r, "connection", new RegExp(`Refused redirect .* port ${otherPort} is neither the http-01 port ${cfg.httpPort}`));
        // https:// without a port means 443, which is not the HTTPS port here either.
        routes.set(CHALLENGE_PATH, redirect(302, "https://127.0.0.1/key"));
        expectError(await validateHttp01(loopback4, TOKEN, KEY_AUTH, cfg), "connection", /port 443 is neither/);
        expect(otherRequests).toBe(0);
      } finally {
        await close(other);
      }
    });
  });

  it("names the size of a wrong answer, quotes at most 64 characters of it, and never PEM or binary", async () => {
    const long = `not the key authorization ${"\x01abcdefgh".repeat(400)}`;
    routes.set(CHALLENGE_PATH, serve(long));
    let detail = expectError(await validateHttp01(loopback4, TOKEN, KEY_AUTH, cfg), "incorrectResponse");
    expect(detail).toContain(`did not match the key authorization (${long.length} bytes)`);
    const quoted = /it starts "(.*)"…$/.exec(detail)?.[1];
    expect(quoted, detail).toBeDefined();
    expect(quoted!.length).toBeLessThanOrEqual(64);
    expect(quoted).toMatch(/^not the key authorization (\\x01abcdefgh)+/);

    const { cert } = await makeCert({ sans: [{ type: "dns", value: "a.example.test" }] });
    routes.set(CHALLENGE_PATH, serve(`Here you are:\n${cert}`));
    detail = expectError(await validateHttp01(loopback4, TOKEN, KEY_AUTH, cfg), "incorrectResponse");
    expect(detail).toMatch(/did not match the key authorization \(\d+ bytes\)$/);
    expect(detail).not.toContain("BEGIN");

    const der = Buffer.from(cert.replace(/-----[^-]+-----|\s/g, ""), "base64");
    routes.set(CHALLENGE_PATH, serve(der));
    detail = expectError(await validateHttp01(loopback4, TOKEN, KEY_AUTH, cfg), "incorrectResponse");
    expect(detail).toMatch(new RegExp(`did not match the key authorization \\(${der.length} bytes\\)$`));
  });

  it("gives a connection error within timeoutMs when the server never answers", async () => {
    const sockets: net.Socket[] = [];
    // resume(): read (and discard) so the client's FIN is seen and the socket closes.
    const silent = net.createServer((s) => sockets.push(s.resume()));
    const port = await listen(silent, "127.0.0.1");
    try {
      const quick = { ...cfg, httpPort: port, timeoutMs: 500 };
      let start = Date.now();
      expectError(await validateHttp01(loopback4, TOKEN, KEY_AUTH, quick), "connection", /Timed out after 500 ms/);
      let elapsed = Date.now() - start;
      expect(elapsed).toBeGreaterThanOrEqual(450);
      expect(elapsed).toBeLessThan(1500);

      start = Date.now();
      expectError(await validateChallenge("http-01", loopback4, TOKEN, KEY_AUTH, quick), "connection", /timed out/i);
      elapsed = Date.now() - start;
      expect(elapsed).toBeGreaterThanOrEqual(450);
      expect(elapsed).toBeLessThan(1500);
      expect(sockets.length).toBe(2);
      await expectNoConnections(silent);
    } finally {
      sockets.forEach((s) => s.destroy());
      await close(silent);
    }
  });

  it("gives a connection error when nothing listens", async () => {
    const port = await freePort();
    expectError(await validateHttp01(loopback4, TOKEN, KEY_AUTH, { ...cfg, httpPort: port }), "connection", /refused/);
  });

  it("connects to an IPv6 literal", async () => {
    const v6 = http.createServer((req, res) => {
      hits.push({ path: req.url ?? "", host: req.headers.host });
      res.writeHead(200).end(KEY_AUTH);
    });
    const port = await listen(v6, "::1");
    try {
      const r = await validateHttp01({ type: "ip", value: "::1" }, TOKEN, KEY_AUTH, { ...cfg, httpPort: port });
      expect(r).toEqual({ ok: true });
      expect(hits).toEqual([{ path: CHALLENGE_PATH, host: `[::1]:${port}` }]);
    } finally {
      await close(v6);
    }
  });

  it("resolves a name through the configured DNS server", async () => {
    routes.set(CHALLENGE_PATH, serve(KEY_AUTH));
    const r = await validateHttp01({ type: "dns", value: "app.example.test" }, TOKEN, KEY_AUTH, cfg);
    expect(r).toEqual({ ok: true });
    // .test names exist only in challtestsrv, so this request went through it.
    expect(hits).toEqual([{ path: CHALLENGE_PATH, host: `app.example.test:${cfg.httpPort}` }]);
  });

  it("follows a redirect to another name, resolved the same way", async () => {
    routes.set(CHALLENGE_PATH, redirect(302, `http://other.example.test:${cfg.httpPort}/there`));
    routes.set("/there", serve(KEY_AUTH));
    const r = await validateHttp01({ type: "dns", value: "app.example.test" }, TOKEN, KEY_AUTH, cfg);
    expect(r).toEqual({ ok: true });
    expect(hits.map((h) => h.host)).toEqual([`app.example.test:${cfg.httpPort}`, `other.example.test:${cfg.httpPort}`]);
  });

  it("reports a DNS failure as dns", async () => {
    await manage("set-servfail", { host: "broken.example.test." });
    const r = await validateHttp01({ type: "dns", value: "broken.example.test" }, TOKEN, KEY_AUTH, cfg);
    expectError(r, "dns", /SERVFAIL looking up A for broken\.example\.test/);
    expect(hits).toHaveLength(0);
  });

  it("falls back to AAAA when a name has no A record, and reports a name with neither", async () => {
    const v6 = http.createServer((req, res) => {
      hits.push({ path: req.url ?? "", host: req.headers.host });
      res.writeHead(200).end(KEY_AUTH);
    });
    const port = await listen(v6, "::1");
    // Stop challtestsrv answering every A query, for this test only.
    await manage("set-default-ipv4", { ip: "" });
    try {
      await manage("add-aaaa", { host: "six.example.test.", addresses: ["::1"] });
      const v6cfg = { ...cfg, httpPort: port };
      expect(await validateHttp01({ type: "dns", value: "six.example.test" }, TOKEN, KEY_AUTH, v6cfg)).toEqual({ ok: true });
      expect(hits).toEqual([{ path: CHALLENGE_PATH, host: `six.example.test:${port}` }]);
      const r = await validateHttp01({ type: "dns", value: "nowhere.example.test" }, TOKEN, KEY_AUTH, v6cfg);
      expectError(r, "dns", /No A or AAAA records found for nowhere\.example\.test/);
    } finally {
      await manage("set-default-ipv4", { ip: "127.0.0.1" });
      await close(v6);
    }
  });

  it("refuses a malformed identifier or token before any request", async () => {
    expectError(await validateHttp01({ type: "dns", value: "a/b@evil" }, TOKEN, KEY_AUTH, cfg), "malformed");
    expectError(await validateHttp01(loopback4, "../x", KEY_AUTH, cfg), "malformed");
    expect(hits).toHaveLength(0);
  });
});

// ------------------------------------------------------------ validateChallenge

describe("validateChallenge", () => {
  it("turns an unexpected error into serverInternal instead of throwing", async () => {
    // An invalid resolver address makes node:dns throw: a configuration bug, not the client's fault.
    const cfg = { ...baseCfg(), resolvers: ["not-an-address"] };
    const r = await validateChallenge("dns-01", { type: "dns", value: "good.example.test" }, TOKEN, KEY_AUTH, cfg);
    expectError(r, "serverInternal", /dns-01 validation failed unexpectedly/);
  });

  it("validators stop when the caller's signal fires, before their own timeout", async () => {
    const silent = net.createServer((s) => void s.resume());
    const port = await listen(silent, "127.0.0.1");
    try {
      const start = Date.now();
      const cfg = { ...baseCfg(), httpPort: port, tlsAlpnPort: port, timeoutMs: 30_000 };
      const h = await validateHttp01(loopback4, TOKEN, KEY_AUTH, cfg, AbortSignal.timeout(300));
      const t = await validateTlsAlpn01(loopback4, KEY_AUTH, cfg, AbortSignal.timeout(300));
      expectError(h, "connection", /Timed out/);
      expectError(t, "connection", /Timed out/);
      expect(Date.now() - start).toBeLessThan(2000);
      await expectNoConnections(silent);
    } finally {
      await close(silent);
    }
  });

  it("refuses an unknown challenge type", async () => {
    const r = await validateChallenge("tls-sni-01" as "dns-01", loopback4, TOKEN, KEY_AUTH, baseCfg());
    expectError(r, "malformed", /tls-sni-01/);
  });
});

// ------------------------------------------------------------------- dns-01

describe("dns-01", () => {
  const expected = crypto.createHash("sha256").update(KEY_AUTH).digest("base64url");
  const cfg = () => baseCfg();

  it("accepts the right TXT record, via validateChallenge", async () => {
    await manage("set-txt", { host: "_acme-challenge.good.example.test.", value: expected });
    const r = await validateChallenge("dns-01", { type: "dns", value: "good.example.test" }, TOKEN, KEY_AUTH, cfg());
    expect(r).toEqual({ ok: true });
  });

  it("accepts when one of several TXT records matches", async () => {
    await manage("set-txt", { host: "_acme-challenge.several.example.test.", value: "stale-value" });
    await manage("set-txt", { host: "_acme-challenge.several.example.test.", value: expected });
    expect(await validateDns01({ type: "dns", value: "several.example.test" }, KEY_AUTH, cfg())).toEqual({ ok: true });
  });

  it("rejects a wrong TXT record and shows it", async () => {
    await manage("set-txt", { host: "_acme-challenge.wrong.example.test.", value: "not-the-digest" });
    const r = await validateDns01({ type: "dns", value: "wrong.example.test" }, KEY_AUTH, cfg());
    expectError(r, "incorrectResponse", /"not-the-digest".*_acme-challenge\.wrong\.example\.test/);
  });

  it("rejects the digest with base64 padding or of another key authorization", async () => {
    await manage("set-txt", { host: "_acme-challenge.pad.example.test.", value: expected + "=" });
    await manage("set-txt", { host: "_acme-challenge.other.example.test.", value: crypto.createHash("sha256").update(KEY_AUTH + "x").digest("base64url") });
    expectError(await validateDns01({ type: "dns", value: "pad.example.test" }, KEY_AUTH, cfg()), "incorrectResponse");
    expectError(await validateDns01({ type: "dns", value: "other.example.test" }, KEY_AUTH, cfg()), "incorrectResponse");
  });

  it("reports a name without TXT records as dns (challtestsrv answers NOERROR with no data)", async () => {
    const r = await validateDns01({ type: "dns", value: "none.example.test" }, KEY_AUTH, cfg());
    expectError(r, "dns", /No TXT records found for _acme-challenge\.none\.example\.test/);
  });

  it("reports SERVFAIL as dns", async () => {
    await manage("set-servfail", { host: "_acme-challenge.sf.example.test." });
    expectError(await validateDns01({ type: "dns", value: "sf.example.test" }, KEY_AUTH, cfg()), "dns", /SERVFAIL/);
  });

  it("reports a DNS server that never answers as dns within timeoutMs", async () => {
    const silent = dgram.createSocket("udp4"); // receives queries, answers none
    await new Promise<void>((resolve) => silent.bind(0, "127.0.0.1", resolve));
    try {
      const start = Date.now();
      const r = await validateDns01({ type: "dns", value: "good.example.test" }, KEY_AUTH, {
        ...cfg(),
        resolvers: [`127.0.0.1:${silent.address().port}`],
        timeoutMs: 600,
      });
      expectError(r, "dns", /timed out looking up TXT/);
      const elapsed = Date.now() - start;
      expect(elapsed).toBeGreaterThanOrEqual(550);
      expect(elapsed).toBeLessThan(1500);
    } finally {
      silent.close();
    }
  });

  it("reports a refused DNS port as dns", async () => {
    const r = await validateDns01({ type: "dns", value: "good.example.test" }, KEY_AUTH, {
      ...cfg(),
      resolvers: [`127.0.0.1:${await freePort()}`],
    });
    expectError(r, "dns", /good\.example\.test/);
  });

  it("joins the strings of one TXT record", async () => {
    // challtestsrv cannot serve a multi-string TXT record; this minimal UDP
    // DNS responder answers every query with one, split in two.
    const server = dgram.createSocket("udp4");
    server.on("message", (query, peer) => {
      let end = 12; // header; the question's name runs to a zero byte, then QTYPE and QCLASS
      while (query[end] !== 0) end += query[end]! + 1;
      end += 5;
      const header = Buffer.from(query.subarray(0, 12));
      header.writeUInt16BE(0x8180, 2); // response, recursion desired+available, NOERROR
      header.writeUInt16BE(1, 4); // one question
      header.writeUInt32BE(0x00010000, 6); // one answer, no authority
      header.writeUInt16BE(0, 10); // no additional records
      const rdata = Buffer.concat([expected.slice(0, 20), expected.slice(20)].map((c) => Buffer.from(String.fromCharCode(c.length) + c)));
      const rr = Buffer.alloc(12);
      rr.writeUInt16BE(0xc00c, 0); // name: pointer to the question's name
      rr.writeUInt16BE(16, 2); // TXT
      rr.writeUInt16BE(1, 4); // IN
      rr.writeUInt32BE(60, 6); // TTL
      rr.writeUInt16BE(rdata.length, 10);
      server.send(Buffer.concat([header, query.subarray(12, end), rr, rdata]), peer.port, peer.address);
    });
    await new Promise<void>((resolve) => server.bind(0, "127.0.0.1", resolve));
    try {
      const r = await validateDns01({ type: "dns", value: "split.example.test" }, KEY_AUTH, {
        ...cfg(),
        resolvers: [`127.0.0.1:${server.address().port}`],
      });
      expect(r).toEqual({ ok: true });
    } finally {
      server.close();
    }
  });

  it("refuses IP identifiers and wildcards", async () => {
    expectError(await validateDns01(loopback4, KEY_AUTH, cfg()), "malformed", /IP/);
    expectError(await validateDns01({ type: "dns", value: "*.example.test" }, KEY_AUTH, cfg()), "malformed");
  });
});

// -------------------------------------------------------------- tls-alpn-01

type San = { type: "dns" | "ip"; value: string };
let keysPromise: Promise<CryptoKeyPair> | undefined;
const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };

/** A self-signed P-256 challenge certificate, as an ACME client would serve it. */
async function makeCert(opts: { sans: San[]; digestOf?: string; critical?: boolean; withExtension?: boolean }) {
  keysPromise ??= webcrypto.subtle.generateKey(alg, true, ["sign", "verify"]) as Promise<CryptoKeyPair>;
  const keys = await keysPromise;
  const digest = crypto.createHash("sha256").update(opts.digestOf ?? KEY_AUTH).digest();
  const acmeIdentifier = Buffer.concat([Buffer.from([0x04, digest.length]), digest]); // DER OCTET STRING
  const extensions: x509.Extension[] = [new x509.SubjectAlternativeNameExtension(opts.sans)];
  if (opts.withExtension !== false) {
    extensions.push(new x509.Extension(ACME_IDENTIFIER_OID, opts.critical ?? true, new Uint8Array(acmeIdentifier)));
  }
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: crypto.randomBytes(8).toString("hex").replace(/^[89a-f]/, "1"),
      name: "CN=ACME challenge",
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 3600_000),
      keys,
      signingAlgorithm: alg,
      extensions,
    },
    webcrypto,
  );
  const pkcs8 = await webcrypto.subtle.exportKey("pkcs8", keys.privateKey);
  return { key: x509.PemConverter.encode(pkcs8, "PRIVATE KEY"), cert: cert.toString("pem") };
}

describe("tls-alpn-01", () => {
  let current: { key: string; cert: string };
  const sni: string[] = [];
  const servers: tls.Server[] = [];
  let cfg: ValidationConfig;

  /** A TLS server that serves `current` for every SNI name and records the names. */
  async function startTls(host: string, alpn: string[] | undefined): Promise<number> {
    const server = tls.createServer({
      ALPNProtocols: alpn,
      SNICallback: (name, cb) => {
        sni.push(name);
        cb(null, tls.createSecureContext(current));
      },
    });
    server.on("tlsClientError", () => {}); // handshake failures are what some tests provoke
    servers.push(server);
    return listen(server, host);
  }

  beforeAll(async () => {
    cfg = { ...baseCfg(), tlsAlpnPort: await startTls("127.0.0.1", ["acme-tls/1"]) };
  });
  afterEach(() => {
    sni.length = 0;
  });
  afterAll(async () => {
    await Promise.all(servers.map(close));
  });

  const appId = { type: "dns", value: "app.example.test" } as const;
  const appSan: San[] = [{ type: "dns", value: "app.example.test" }];

  it("accepts a correct challenge certificate, via validateChallenge and the DNS server", async () => {
    current = await makeCert({ sans: appSan });
    expect(await validateChallenge("tls-alpn-01", appId, TOKEN, KEY_AUTH, cfg)).toEqual({ ok: true });
    expect(sni).toEqual(["app.example.test"]);
  });

  it("rejects a digest of another key authorization", async () => {
    current = await makeCert({ sans: appSan, digestOf: KEY_AUTH + "x" });
    expectError(await validateTlsAlpn01(appId, KEY_AUTH, cfg), "incorrectResponse", /acmeIdentifier extension holds/);
  });

  it("rejects a non-critical acmeIdentifier extension", async () => {
    current = await makeCert({ sans: appSan, critical: false });
    expectError(await validateTlsAlpn01(appId, KEY_AUTH, cfg), "incorrectResponse", /not marked critical/);
  });

  it("rejects a certificate without the acmeIdentifier extension", async () => {
    current = await makeCert({ sans: appSan, withExtension: false });
    expectError(await validateTlsAlpn01(appId, KEY_AUTH, cfg), "incorrectResponse", /0 acmeIdentifier extensions/);
  });

  it("rejects an extra SAN", async () => {
    current = await makeCert({ sans: [...appSan, { type: "dns", value: "extra.example.test" }] });
    const detail = expectError(await validateTlsAlpn01(appId, KEY_AUTH, cfg), "incorrectResponse", /exactly dns:app\.example\.test/);
    expect(detail).toContain("extra.example.test");
  });

  it("rejects a SAN for another name", async () => {
    current = await makeCert({ sans: [{ type: "dns", value: "other.example.test" }] });
    expectError(await validateTlsAlpn01(appId, KEY_AUTH, cfg), "incorrectResponse", /other\.example\.test/);
  });

  it("fails with tls when the server does not speak acme-tls/1", async () => {
    current = await makeCert({ sans: appSan });
    const noAlpn = { ...cfg, tlsAlpnPort: await startTls("127.0.0.1", undefined) };
    expectError(await validateTlsAlpn01(appId, KEY_AUTH, noAlpn), "tls", /negotiated ALPN none/);
    const httpOnly = { ...cfg, tlsAlpnPort: await startTls("127.0.0.1", ["http/1.1"]) };
    expectError(await validateTlsAlpn01(appId, KEY_AUTH, httpOnly), "tls");
  });

  it("fails with tls when the peer is not TLS at all", async () => {
    const plain = net.createServer((s) => s.resume().end("HTTP/1.1 400 Bad Request\r\n\r\n"));
    const port = await listen(plain, "127.0.0.1");
    try {
      expectError(await validateTlsAlpn01(appId, KEY_AUTH, { ...cfg, tlsAlpnPort: port }), "tls", /handshake/);
      await expectNoConnections(plain);
    } finally {
      await close(plain);
    }
  });

  it("gives a connection error within timeoutMs when the server never does TLS", async () => {
    const silent = net.createServer((s) => void s.resume());
    const port = await listen(silent, "127.0.0.1");
    try {
      const start = Date.now();
      const r = await validateTlsAlpn01(appId, KEY_AUTH, { ...cfg, tlsAlpnPort: port, timeoutMs: 500 });
      expectError(r, "connection", /Timed out after 500 ms waiting for the TLS handshake/);
      expect(Date.now() - start).toBeLessThan(1500);
      await expectNoConnections(silent);
    } finally {
      await close(silent);
    }
  });

  it("fails with connection when nothing listens", async () => {
    const port = await freePort();
    expectError(await validateTlsAlpn01(appId, KEY_AUTH, { ...cfg, tlsAlpnPort: port }), "connection");
  });

  it("validates 127.0.0.1 with an iPAddress SAN and the reverse name as SNI", async () => {
    current = await makeCert({ sans: [{ type: "ip", value: "127.0.0.1" }] });
    expect(await validateTlsAlpn01(loopback4, KEY_AUTH, cfg)).toEqual({ ok: true });
    expect(sni).toEqual(["1.0.0.127.in-addr.arpa"]);
  });

  it("rejects a dNSName SAN for an IP identifier", async () => {
    current = await makeCert({ sans: [{ type: "dns", value: "1.0.0.127.in-addr.arpa" }] });
    expectError(await validateTlsAlpn01(loopback4, KEY_AUTH, cfg), "incorrectResponse");
  });

  it("validates ::1 with the ip6.arpa name as SNI", async () => {
    current = await makeCert({ sans: [{ type: "ip", value: "::1" }] });
    const port = await startTls("::1", ["acme-tls/1"]);
    const r = await validateTlsAlpn01({ type: "ip", value: "::1" }, KEY_AUTH, { ...cfg, tlsAlpnPort: port });
    expect(r).toEqual({ ok: true });
    expect(sni).toEqual(["1." + "0.".repeat(31) + "ip6.arpa"]);
  });

  it("builds reverse names as in RFC 3596", () => {
    expect(reverseName("2001:db8::567:89ab")).toBe("b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
    expect(reverseName("::ffff:192.0.2.1")).toBe("1.0.2.0.0.0.0.c.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa");
    expect(reverseName("192.0.2.10")).toBe("10.2.0.192.in-addr.arpa");
  });
});
