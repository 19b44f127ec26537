// The load generator of `npm run bench -- acme`, in a process of its own so
// that the service's process does only the service's work (and a CPU profile
// of it shows only the server). Driven by scripts/bench/acme.ts over IPC:
//
//   child -> parent, once:  { ready: true, http01Port }
//   parent -> child:        { id, cmd: "setup", httpsUrl, rootPem, token, accounts, directoryPath? }
//                           { id, cmd: "run", mode: "acme" | "rest", concurrency, seconds }
//                           { id, cmd: "samples", n }
//   child -> parent:        { id, ok: true, result } | { id, ok: false, error }
//
// It also holds the http-01 responder: one node:http server on loopback
// answering every token from a Map, which the order loops fill before they
// POST a challenge. BENCH_ACME_HTTP01_PORT chooses its port (default: any
// free one; step-ca 0.19 validates http-01 on port 80 only).
import "reflect-metadata";
import crypto, { webcrypto } from "node:crypto";
import http from "node:http";
import https from "node:https";
import type net from "node:net";
import * as x509 from "@peculiar/x509";
import { AcmeClient, type Account, type AcmeResponse } from "../../test/helpers/acme-client.ts";
import { keyAuthorization, newAccountKey } from "../../test/helpers/acme-jws.ts";

/** Delay between two POST-as-GETs of an authorization or order that is not done yet. */
const POLL_MS = Number(process.env.BENCH_ACME_POLL_MS ?? 20);
/** Give up on one order (and count an error) after this long. */
const ORDER_DEADLINE_MS = 30_000;

export type Mode = "acme" | "rest";

export interface RunResult {
  mode: Mode;
  concurrency: number;
  /** Orders (or REST issuances) completed. */
  completed: number;
  errors: number;
  errorSamples: string[];
  /** From the first order started to the last one ended (loops start no order after the duration). */
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** HTTP requests the client sent to the CA, per completed order. */
  requestsPerOrder: number;
  /** authz POST-as-GETs per order that found it not valid yet. */
  pendingPollsPerOrder: number;
  /** GETs the validator made on the http-01 server, per completed order. */
  validatorGetsPerOrder: number;
  /** badNonce answers retried (there should be none: every response carries a fresh nonce). */
  badNonceRetries: number;
  /** finalize answered orderNotReady although the authorization was valid; retried once the order said ready. */
  finalizeRetries: number;
  /** Mean milliseconds of each kind of request (ACME), or of the issuance request (REST: "issue"). */
  stepMs: Record<string, number>;
  /** CPU time of this process (the client and the http-01 server) during the run, ms. */
  clientCpuMs: number;
}

interface Setup {
  httpsUrl: string;
  rootPem: string;
  token: string;
  directory: Record<string, any>;
  accounts: Array<Account & { thumbprintOf: (token: string) => string }>;
}

let setup: Setup | undefined;
/** token -> key authorization, served by the http-01 server. */
const challenges = new Map<string, string>();
let validatorGets = 0;
let badNonceRetries = 0;
/** Every ACME certificate chain downloaded (name, PEM), for the parent's openssl sample. */
const downloaded: Array<{ name: string; pem: string }> = [];
let ordersCompleted = 0;

// --------------------------------------------------------------------------- http-01

const http01 = http.createServer((req, res) => {
  validatorGets++;
  const token = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(req.url ?? "")?.[1];
  const body = token === undefined ? undefined : challenges.get(token);
  if (body === undefined) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "content-type": "text/plain" }).end(body);
});

// --------------------------------------------------------------------------- CSRs

const EC = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };

/** A fresh P-256 key and a CSR for `name` (CN and one DNS SAN): the same for ACME and REST. */
async function makeCsr(name: string): Promise<x509.Pkcs10CertificateRequest> {
  const keys = (await webcrypto.subtle.generateKey(EC, false, ["sign", "verify"])) as CryptoKeyPair;
  return x509.Pkcs10CertificateRequestGenerator.create(
    { name: `CN=${name}`, keys, signingAlgorithm: EC, extensions: [new x509.SubjectAlternativeNameExtension([{ type: "dns", value: name }])] },
    webcrypto as Crypto,
  );
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const runTag = crypto.randomBytes(3).toString("hex");
let nameCounter = 0;
/** A name nobody ordered before: the per-identifier limit never applies, no authorization is reused. */
const freshName = (loop: number) => `o${nameCounter++}-l${loop}-${runTag}.bench.example.test`;

// --------------------------------------------------------------------------- ACME

/** One client per order loop: its own keep-alive connection and its own nonce. */
class Loop {
  requests = 0;
  pendingPolls = 0;
  finalizeRetries = 0;
  /** Per kind of request: [count, total ms]. */
  steps = new Map<string, [number, number]>();
  readonly acme: AcmeClient;
  readonly restAgent: https.Agent;

  constructor(
    readonly index: number,
    readonly s: Setup,
  ) {
    this.acme = new AcmeClient(s.httpsUrl, s.rootPem);
    this.acme.directory = s.directory;
    const request = this.acme.request.bind(this.acme);
    this.acme.request = (...args: Parameters<AcmeClient["request"]>) => {
      this.requests++;
      return request(...args);
    };
    this.restAgent = new https.Agent({ ca: s.rootPem, keepAlive: true, maxSockets: 1 });
  }

  get account() {
    return this.s.accounts[this.index % this.s.accounts.length]!;
  }

  /** A signed POST; a badNonce answer is retried with the nonce it carries, as clients do (RFC 8555 §6.5). */
  private async post(url: string, payload: object | ""): Promise<AcmeResponse> {
    for (let attempt = 0; ; attempt++) {
      const res = await this.acme.postAs(this.account, url, payload);
      if (res.status === 400 && res.body?.type === "urn:ietf:params:acme:error:badNonce" && attempt < 3) {
        badNonceRetries++;
        continue;
      }
      return res;
    }
  }

  timed<T>(what: string, p: Promise<T>): Promise<T> {
    const t0 = performance.now();
    return p.finally(() => {
      const s = this.steps.get(what) ?? [0, 0];
      s[0]++;
      s[1] += performance.now() - t0;
      this.steps.set(what, s);
    });
  }

  private async expect(url: string, payload: object | "", status: number, what: string): Promise<AcmeResponse> {
    const res = await this.timed(what, this.post(url, payload));
    if (res.status !== status) throw new Error(`${what}: HTTP ${res.status} ${res.text.slice(0, 300)}`);
    return res;
  }

  /** POST-as-GET `url` until its status is `want`; any final status but `want` is an error. */
  private async pollUntil(url: string, want: string, what: string, deadline: number, onPending?: () => void): Promise<any> {
    for (;;) {
      const body = (await this.expect(url, "", 200, `${what} poll`)).body;
      if (body.status === want) return body;
      if (body.status !== "pending" && body.status !== "processing" && !(want === "valid" && body.status === "ready")) {
        throw new Error(`${what} is ${body.status}: ${JSON.stringify(body).slice(0, 400)}`);
      }
      if (performance.now() > deadline) throw new Error(`${what} still ${body.status} after ${ORDER_DEADLINE_MS} ms`);
      onPending?.();
      await sleep(POLL_MS);
    }
  }

  /** newOrder, authz, http-01, poll, finalize with a fresh CSR, poll the order, download. */
  async acmeOrder(): Promise<void> {
    const deadline = performance.now() + ORDER_DEADLINE_MS;
    const name = freshName(this.index);
    const dir = this.s.directory;
    const order = await this.expect(dir.newOrder, { identifiers: [{ type: "dns", value: name }] }, 201, "newOrder");
    const orderUrl = order.location!;
    const authzUrl = order.body.authorizations[0] as string;
    const authz = (await this.expect(authzUrl, "", 200, "authorization")).body;
    const ch = (authz.challenges as Array<{ type: string; url: string; token: string }>).find((c) => c.type === "http-01");
    if (!ch) throw new Error(`no http-01 challenge: ${JSON.stringify(authz)}`);
    challenges.set(ch.token, this.account.thumbprintOf(ch.token));
    try {
      await this.timed(
        "validation",
        (async () => {
          await this.expect(ch.url, {}, 200, "challenge");
          await this.pollUntil(authzUrl, "valid", "authorization", deadline, () => this.pendingPolls++);
        })(),
      );
    } finally {
      challenges.delete(ch.token);
    }
    const csr = await makeCsr(name);
    const finalizeBody = { csr: Buffer.from(csr.rawData).toString("base64url") };
    let fin = await this.timed("finalize", this.post(order.body.finalize, finalizeBody));
    if (fin.status === 403 && fin.body?.type === "urn:ietf:params:acme:error:orderNotReady") {
      // The authorization said valid before the order said ready: wait for the order, as a careful client would.
      this.finalizeRetries++;
      await this.pollUntil(orderUrl, "ready", "order (not ready at finalize)", deadline);
      fin = await this.timed("finalize", this.post(order.body.finalize, finalizeBody));
    }
    if (fin.status !== 200) throw new Error(`finalize: HTTP ${fin.status} ${fin.text.slice(0, 300)}`);
    if (fin.body.status !== "valid" && fin.body.status !== "processing") throw new Error(`finalize answered an order ${fin.body.status}`);
    const done = await this.pollUntil(orderUrl, "valid", "order", deadline);
    const cert = await this.expect(done.certificate, "", 200, "certificate");
    if (!/^application\/pem-certificate-chain/.test(String(cert.headers["content-type"])) || cert.text.split("-----BEGIN CERTIFICATE-----").length !== 3) {
      throw new Error(`certificate download is not a leaf and one issuer: ${cert.headers["content-type"]} ${cert.text.slice(0, 100)}`);
    }
    downloaded.push({ name, pem: cert.text });
    ordersCompleted++;
  }

  /** POST /api/v1/certificates with the same kind of CSR. */
  async restIssue(): Promise<void> {
    const csr = await makeCsr(freshName(this.index));
    const body = JSON.stringify({ csr: csr.toString("pem"), profile: "tls-server" });
    this.requests++;
    const res = await this.timed("issue", new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = https.request(
        `${this.s.httpsUrl}/api/v1/certificates`,
        { method: "POST", agent: this.restAgent, timeout: 30_000, headers: { authorization: `Bearer ${this.s.token}`, "content-type": "application/json" } },
        (r) => {
          let text = "";
          r.setEncoding("utf8");
          r.on("data", (d) => (text += d));
          r.on("end", () => resolve({ status: r.statusCode!, text }));
        },
      );
      req.on("error", reject);
      req.on("timeout", () => req.destroy(new Error("REST issuance timed out")));
      req.end(body);
    }));
    if (res.status !== 201) throw new Error(`REST issuance: HTTP ${res.status} ${res.text.slice(0, 300)}`);
    if (!(JSON.parse(res.text) as { certificate?: string }).certificate?.includes("BEGIN CERTIFICATE")) throw new Error("REST issuance answered no certificate");
  }
}

const loops: Loop[] = [];
function loopAt(i: number): Loop {
  while (loops.length <= i) loops.push(new Loop(loops.length, setup!));
  return loops[i]!;
}

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

async function run(mode: Mode, concurrency: number, seconds: number): Promise<RunResult> {
  const used = Array.from({ length: concurrency }, (_, i) => loopAt(i));
  for (const l of used) (l.requests = 0), (l.pendingPolls = 0), (l.finalizeRetries = 0), l.steps.clear();
  const cpu0 = process.cpuUsage();
  const gets0 = validatorGets;
  const retries0 = badNonceRetries;
  const latencies: number[] = [];
  const errorSamples: string[] = [];
  let errors = 0;
  const start = performance.now();
  const stopAt = start + seconds * 1000;
  await Promise.all(
    used.map(async (l) => {
      while (performance.now() < stopAt) {
        const t0 = performance.now();
        try {
          await (mode === "acme" ? l.acmeOrder() : l.restIssue());
          latencies.push(performance.now() - t0);
        } catch (err) {
          errors++;
          if (errorSamples.length < 5) errorSamples.push((err as Error).message);
          await sleep(100);
        }
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const steps = new Map<string, [number, number]>();
  for (const l of used) {
    for (const [k, [c, ms]] of l.steps) {
      const s = steps.get(k) ?? [0, 0];
      steps.set(k, [s[0] + c, s[1] + ms]);
    }
  }
  latencies.sort((a, b) => a - b);
  const n = latencies.length;
  const sum = (f: (l: Loop) => number) => used.reduce((a, l) => a + f(l), 0);
  return {
    mode,
    concurrency,
    completed: n,
    errors,
    errorSamples,
    seconds: elapsed,
    perSecond: n / elapsed,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    requestsPerOrder: n ? sum((l) => l.requests) / n : NaN,
    pendingPollsPerOrder: n && mode === "acme" ? sum((l) => l.pendingPolls) / n : 0,
    validatorGetsPerOrder: n && mode === "acme" ? (validatorGets - gets0) / n : 0,
    badNonceRetries: badNonceRetries - retries0,
    finalizeRetries: sum((l) => l.finalizeRetries),
    stepMs: Object.fromEntries([...steps].map(([k, [c, ms]]) => [k, ms / c])),
    clientCpuMs: (cpu.user + cpu.system) / 1000,
  };
}

async function doSetup(msg: { httpsUrl: string; rootPem: string; token: string; accounts: number; directoryPath?: string }): Promise<{ accounts: string[] }> {
  const c = new AcmeClient(msg.httpsUrl, msg.rootPem, msg.directoryPath);
  await c.init();
  const accounts: Setup["accounts"] = [];
  for (let i = 0; i < msg.accounts; i++) {
    const key = newAccountKey("ES256");
    const { account } = await c.newAccount(key);
    accounts.push({ ...account, thumbprintOf: (token) => keyAuthorization(token, key.jwk) });
  }
  c.close();
  setup = { httpsUrl: msg.httpsUrl, rootPem: msg.rootPem, token: msg.token, directory: c.directory, accounts };
  return { accounts: accounts.map((a) => a.url) };
}

/** n downloaded chains, evenly spread over all the runs. */
function samples(n: number): { samples: Array<{ name: string; pem: string }>; ordersCompleted: number; downloaded: number } {
  const k = Math.min(n, downloaded.length);
  const out = Array.from({ length: k }, (_, j) => downloaded[Math.floor((j * downloaded.length) / k)]!);
  return { samples: out, ordersCompleted, downloaded: downloaded.length };
}

process.on("message", (msg: any) => {
  const reply = (r: object) => process.send!(r);
  const work = async () => {
    switch (msg.cmd) {
      case "setup":
        return doSetup(msg);
      case "run":
        return run(msg.mode, msg.concurrency, msg.seconds);
      case "samples":
        return samples(msg.n);
      case "exit":
        for (const l of loops) l.acme.close(), l.restAgent.destroy();
        http01.close();
        process.disconnect();
        return {};
      default:
        throw new Error(`unknown command ${msg.cmd}`);
    }
  };
  work().then(
    (result) => msg.cmd !== "exit" && reply({ id: msg.id, ok: true, result }),
    (err: Error) => reply({ id: msg.id, ok: false, error: err.stack ?? err.message }),
  );
});
process.on("disconnect", () => process.exit(0));

http01.once("error", (err) => {
  process.send!({ ready: false, error: `the http-01 server cannot listen: ${err.message}` });
  process.exit(1);
});
http01.listen(Number(process.env.BENCH_ACME_HTTP01_PORT ?? 0), "127.0.0.1", () => {
  process.send!({ ready: true, http01Port: (http01.address() as net.AddressInfo).port });
});
