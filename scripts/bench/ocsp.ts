import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import path from "node:path";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";
import { createApiToken } from "../../src/auth/api-tokens.ts";
import { sequence } from "../../src/asn1/der-writer.ts";
import { buildCertId, issuerHashes, type IssuerKeyHashes } from "../../src/ca/ocsp-cert-id.ts";
import { and, count, eq, gt, inArray } from "drizzle-orm";
import { certificatesNeedingOcsp } from "../../src/store/ocsp.ts";
import { ocspResponses } from "../../src/store/schema.ts";
import { Background, ensureTool, freePort, nodeTsArgs, pool, run, sleep, tempDir, waitForPort } from "./proc.ts";
import { startBenchService, type BenchService } from "./service.ts";
import { log, num, ratio, toolVersion, type Section } from "./report.ts";
import { describeErrors, runWrk, wrkErrors, type WrkRequest, type WrkResult } from "./wrk.ts";

/**
 * OCSP from the pre-signed cache: hsm-ca answering GET and POST requests
 * for certificates whose responses it signed in the background, under wrk;
 * against a node:http server returning one fixed response of the same size
 * and headers (the ceiling for any Node HTTP server on this machine), and
 * cfssl's ocspserve (Go) with pre-signed responses (POST only in Debian's build).
 */

const CERTIFICATES = Number(process.env.BENCH_OCSP_CERTS ?? 1000);
const CFSSL_CERTIFICATES = Number(process.env.BENCH_OCSP_CFSSL_CERTS ?? 200);
const DURATION_S = Number(process.env.BENCH_OCSP_SECONDS ?? 10);
const WARMUP_S = 2;
/** Every server is loaded once a round, in turn; the best round counts (interference only ever slows a run down). */
const ROUNDS = Number(process.env.BENCH_OCSP_ROUNDS ?? 2);
const CONNECTIONS = 8;
const THREADS = 2;
/** Responses checked with openssl, of each server. */
const OPENSSL_SAMPLE = 20;

const CEILING = "ceiling: node:http, fixed response";
const OCSP_REQUEST = { "content-type": "application/ocsp-request" };

/** OCSPRequest { tbsRequest { requestList { Request { reqCert } } } }: no nonce, no extensions. */
function ocspRequest(hashes: IssuerKeyHashes, serial: string): Uint8Array {
  return sequence(sequence(sequence(sequence(buildCertId(hashes, "sha1", serial).der))));
}

const getPath = (req: Uint8Array) => `/ocsp/${encodeURIComponent(Buffer.from(req).toString("base64"))}`;

interface Target {
  name: string;
  method: "GET" | "POST";
  /** The best round's. */
  result: WrkResult;
  rounds: WrkResult[];
  cycled: number;
  ceiling?: string;
}

export async function runOcsp(): Promise<Section> {
  const section: Section = {
    name: "ocsp",
    title: "OCSP from the pre-signed cache",
    summary: `hsm-ca issues ${CERTIFICATES} certificates through its REST API, pre-signs their OCSP responses in the background
(\`OcspService.refreshDue\`, delegated P-256 responder key in SoftHSM2), then serves them from memory on its plain-HTTP
listener. wrk (${THREADS} threads, ${CONNECTIONS} connections, keep-alive, ${DURATION_S} s runs after a ${WARMUP_S} s warm-up; ${ROUNDS} rounds
through all servers in turn, the best round of each counts) cycles through one request per certificate (SHA-1 CertID, no nonce), as GET (base64 in the path, RFC 5019) and as POST. The ceiling is a minimal
node:http server in its own process answering every request with one fixed response of the same size and headers. The peer is
cfssl's \`ocspserve\` (Go) with ${CFSSL_CERTIFICATES} pre-signed responses, POST only in Debian's build. Load generator and servers
share the machine's cores.`,
    tables: [],
    facts: {},
    notes: [],
  };
  if (!ensureTool("wrk", "wrk")) {
    section.skipped = "wrk is not installed (Debian package `wrk`)";
    return section;
  }
  section.facts.wrk = toolVersion("wrk", ["-v"]).replace(/ Copyright.*$/, "").replace(/^wrk /, "");

  const bench = await startBenchService();
  const work = tempDir("hsmca-bench-ocsp-");
  const servers: Background[] = [];
  const targets: Target[] = [];
  try {
    section.facts.database = bench.db.version;
    log(`OCSP: service up on ${bench.db.kind === "postgres" ? "PostgreSQL" : "PGlite"} (${bench.db.version})`);
    const issued = await issueCertificates(bench, CERTIFICATES);
    log(`OCSP: issued ${issued.serials.length} certificates in ${(issued.ms / 1000).toFixed(1)} s; pre-signing their responses`);
    const presignMs = await presign(bench, issued.serials);
    log(`OCSP: pre-signed in ${(presignMs / 1000).toFixed(1)} s`);
    // Nothing should be due now; whatever still is, the refresher signs again and again.
    const now = new Date();
    const stillDue = (await certificatesNeedingOcsp(bench.service.ctx.store.db, now, new Date(now.getTime() + bench.config.revocation.ocspResponseLifetimeMs / 2), 100_000)).length;
    await bench.service.revocation.ocsp.stop(); // resolves once a batch in flight has stopped
    if (stillDue > 0) {
      section.notes.push(
        `**Performance problem:** right after every certificate got a fresh response, \`certificatesNeedingOcsp\` still reports ${stillDue} certificates due, so the background refresher re-signs them without end (paced by HSM_CA_OCSP_SIGN_RATE). The main rows are measured with the refresher paused; the row "refresher running" shows the service as shipped.`,
      );
    }

    const issuer = bench.service.ctx.issuer();
    const hashes = issuerHashes(issuer.certificate);
    const requests = issued.serials.map((s) => ocspRequest(hashes, s));
    const intermediatePem = path.join(work, "intermediate.pem");
    const rootPem = path.join(work, "root.pem");
    fs.writeFileSync(intermediatePem, issuer.chainPem);
    fs.writeFileSync(rootPem, issuer.rootPem);

    // Our requests are the ones openssl makes.
    await sameAsOpenssl(work, intermediatePem, issued.pems[0]!, requests[0]!, "hsm-ca");

    // Every URL answers 200 with a successful OCSP response; a sample verifies as "good" with openssl.
    const base = bench.service.httpUrl;
    const bodies = await pool(requests.length, 8, async (i) => {
      const r = await fetch(base + getPath(requests[i]!));
      const body = new Uint8Array(await r.arrayBuffer());
      if (r.status !== 200 || r.headers.get("content-type") !== "application/ocsp-response" || !isSuccessful(body)) {
        throw new Error(`GET for serial ${issued.serials[i]} answered ${r.status} ${r.headers.get("content-type")} (${body.length} bytes)`);
      }
      const p = await fetch(base + "/ocsp", { method: "POST", headers: OCSP_REQUEST, body: Buffer.from(requests[i]!) });
      if (p.status !== 200 || !Buffer.from(await p.arrayBuffer()).equals(body)) throw new Error(`POST for serial ${issued.serials[i]} did not answer what GET did`);
      return body;
    });
    await checkGood(work, "hsm-ca", bodies, issued.pems, intermediatePem, ["-CAfile", rootPem, "-verify_other", intermediatePem]);
    section.notes.push(
      `All ${requests.length} GET URLs answered 200 with a successful response, and POST the same bytes; ${Math.min(OPENSSL_SAMPLE, requests.length)} of them verified as \`good\` by \`openssl ocsp -respin\` against the root; the requests are byte for byte those of \`openssl ocsp -no_nonce -reqout\`.`,
    );

    // The ceiling: one of hsm-ca's responses, with its headers, from a bare node:http server.
    const sample = await rawGet(base + getPath(requests[0]!));
    const ceiling = Background.start("fixed-response server", process.execPath, nodeTsArgs("scripts/bench/fixed-response-server.ts"), {
      env: { ...process.env, BENCH_FIXED_RESPONSE: JSON.stringify({ status: 200, headers: sample.headers, bodyBase64: sample.body.toString("base64") }) },
    });
    servers.push(ceiling);
    const ceilingPort = Number((await ceiling.waitForLine(/listening (\d+)/))[1]);
    const ceilingUrl = `http://127.0.0.1:${ceilingPort}`;

    const gets: WrkRequest[] = requests.map((r) => ({ method: "GET", path: getPath(r) }));
    const posts: WrkRequest[] = requests.map((r) => ({ method: "POST", path: "/ocsp", headers: OCSP_REQUEST, body: r }));
    const load = async (name: string, method: "GET" | "POST", target: string, reqs: WrkRequest[], ceilingName?: string) => {
      let t = targets.find((x) => x.name === name && x.method === method);
      log(`OCSP: wrk ${method} ${name} (${t ? "" : `${WARMUP_S} s warm-up, `}${DURATION_S} s measured)`);
      if (!t) await runWrk({ target, requests: reqs, connections: CONNECTIONS, threads: THREADS, durationS: WARMUP_S });
      const result = await runWrk({ target, requests: reqs, connections: CONNECTIONS, threads: THREADS, durationS: DURATION_S });
      log(`OCSP:   ${num(result.rps)} responses/s, ${describeErrors(result)}`);
      if (!t) targets.push((t = { name, method, result, cycled: reqs.length, ceiling: ceilingName, rounds: [] }));
      t.rounds.push(result);
      if (result.rps > t.result.rps) t.result = result;
    };
    let cfssl: Awaited<ReturnType<typeof cfsslPeer>> | null = null;
    for (let round = 1; round <= ROUNDS; round++) {
      log(`OCSP: round ${round} of ${ROUNDS}`);
      await load(CEILING, "GET", ceilingUrl, gets);
      await load("hsm-ca", "GET", base, gets, CEILING);
      if (stillDue > 0) {
        bench.service.revocation.ocsp.resume();
        void bench.service.revocation.ocsp.refreshDue();
        await load("hsm-ca, refresher running", "GET", base, gets, CEILING);
        await bench.service.revocation.ocsp.stop(); // resolves once a batch in flight has stopped
      }
      await load(CEILING, "POST", ceilingUrl, posts);
      await load("hsm-ca", "POST", base, posts, CEILING);
      if (cfssl === null) {
        cfssl = await cfsslPeer(work, section);
        if (cfssl) servers.push(cfssl.server);
      }
      if (cfssl) await load("peer: cfssl ocspserve", "POST", cfssl.url, cfssl.requests, CEILING);
    }

    // Checks on the load runs themselves.
    for (const t of targets) {
      for (const r of t.rounds) {
        if (wrkErrors(r) > 0) section.failed = [...(section.failed ?? []), `wrk against ${t.name} (${t.method}): ${describeErrors(r)}`];
        if (r.requests === 0) section.failed = [...(section.failed ?? []), `wrk against ${t.name} (${t.method}) completed no request`];
      }
    }
    const find = (name: string, method: string) => targets.find((t) => t.name === name && t.method === method)?.result;
    for (const method of ["GET", "POST"]) {
      const ours = find("hsm-ca", method);
      const ceil = find(CEILING, method);
      if (ours && ceil && Math.abs(ours.bytesPerResponse - ceil.bytesPerResponse) > 4) {
        section.failed = [...(section.failed ?? []), `hsm-ca answered ${num(ours.bytesPerResponse)} bytes a response to ${method} under load, the ceiling ${num(ceil.bytesPerResponse)}: not the same responses`];
      }
    }
    if (!section.failed?.length) section.notes.push("wrk saw no non-2xx response and no socket error in any run; hsm-ca's bytes per response under load equal the ceiling's (the cached responses, not error responses).");

    section.tables.push({
      headers: ["server", "method", "requests cycled", "responses/s (best round)", "vs ceiling (same method)", "each round", "bytes/response"],
      rows: targets.map((t) => {
        const ceil = t.ceiling ? find(t.ceiling, t.method) : undefined;
        return [
          t.name,
          t.method,
          t.cycled,
          num(t.result.rps),
          t.ceiling ? ratio(t.result.rps, ceil?.rps) : "1×",
          t.rounds.map((r) => num(r.rps)).join(", "),
          num(t.result.bytesPerResponse),
        ];
      }),
    });
    const hsmGet = find("hsm-ca", "GET");
    const ceilGet = find(CEILING, "GET");
    const hsmPost = find("hsm-ca", "POST");
    const ceilPost = find(CEILING, "POST");
    const cfsslPost = find("peer: cfssl ocspserve", "POST");
    const running = find("hsm-ca, refresher running", "GET");
    section.tables.push({
      caption: "Ratios (above 1: the first is faster):",
      headers: ["ratio", "value"],
      rows: [
        ["hsm-ca GET / ceiling GET", ratio(hsmGet?.rps, ceilGet?.rps)],
        ["hsm-ca POST / ceiling POST", ratio(hsmPost?.rps, ceilPost?.rps)],
        ["hsm-ca POST / cfssl POST", cfsslPost ? ratio(hsmPost?.rps, cfsslPost.rps) : "cfssl not installed"],
        ["hsm-ca GET / cfssl POST", cfsslPost ? ratio(hsmGet?.rps, cfsslPost.rps) : "cfssl not installed"],
        ["cfssl POST / ceiling POST", cfsslPost ? ratio(cfsslPost.rps, ceilPost?.rps) : "cfssl not installed"],
        ...(running ? [["hsm-ca GET, refresher running / paused", ratio(running.rps, hsmGet?.rps)]] : []),
      ],
    });
    section.notes.push(
      `Setup, not measured against a ceiling: issuing ${CERTIFICATES} certificates over REST took ${(issued.ms / 1000).toFixed(1)} s and pre-signing their responses ${(presignMs / 1000).toFixed(1)} s (paced by HSM_CA_OCSP_SIGN_RATE, default 200/s).`,
    );
    return section;
  } finally {
    for (const s of servers) await s.stop();
    await bench.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** Certificates through the REST API: an admin token, one P-256 key, a CSR per certificate. */
async function issueCertificates(bench: BenchService, count: number): Promise<{ serials: string[]; pems: string[]; ms: number }> {
  const { service } = bench;
  const token = await createApiToken(service.ctx.store.db, { role: "admin", description: "bench" });
  const agent = new https.Agent({ ca: service.ctx.issuer().rootPem, keepAlive: true, maxSockets: 8 });
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = (await webcrypto.subtle.generateKey(alg, false, ["sign", "verify"])) as CryptoKeyPair;
  const started = performance.now();
  const out = await pool(count, 8, async (i) => {
    const name = `bench-${i}.example.test`;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create(
      { name: `CN=${name}`, keys, signingAlgorithm: alg, extensions: [new x509.SubjectAlternativeNameExtension([{ type: "dns", value: name }])] },
      webcrypto as Crypto,
    );
    const body = JSON.stringify({ csr: csr.toString("pem"), profile: "tls-server", validity: "24h" });
    const res = await post(agent, `${service.httpsUrl}/api/v1/certificates`, body, { authorization: `Bearer ${token.secret}`, "content-type": "application/json" });
    if (res.status !== 201 && res.status !== 200) throw new Error(`issuance answered ${res.status}: ${res.text.slice(0, 300)}`);
    const j = JSON.parse(res.text) as { serial: string; certificate: string };
    return { serial: j.serial, pem: j.certificate };
  });
  agent.destroy();
  return { serials: out.map((o) => o.serial), pems: out.map((o) => o.pem), ms: performance.now() - started };
}

function post(agent: https.Agent, url: string, body: string, headers: Record<string, string>): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: "POST", agent, headers, timeout: 30_000 }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode!, text }));
    });
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error(`POST ${url} timed out`)));
    req.end(body);
  });
}

/**
 * Runs the pre-signing until every issued certificate has a stored "good"
 * response good for more than half its lifetime (bounded: 2 minutes).
 */
async function presign(bench: BenchService, serials: string[]): Promise<number> {
  const { ocsp } = bench.service.revocation;
  const db = bench.service.ctx.store.db;
  const lifetime = bench.config.revocation.ocspResponseLifetimeMs;
  const started = performance.now();
  const deadline = Date.now() + 120_000;
  for (;;) {
    const [row] = await db
      .select({ n: count() })
      .from(ocspResponses)
      .where(and(inArray(ocspResponses.serial, serials), eq(ocspResponses.status, "good"), gt(ocspResponses.nextUpdate, new Date(Date.now() + lifetime / 2))));
    if (row!.n === serials.length) return performance.now() - started;
    if (Date.now() > deadline) throw new Error(`OCSP pre-signing did not finish within 2 minutes (${row!.n} of ${serials.length} done)`);
    await ocsp.refreshDue(); // returns at once while the service's own timer runs it
    await sleep(50);
  }
}


/** Status, headers and body of one GET, as the server sent them (for the ceiling to copy). */
async function rawGet(url: string): Promise<{ headers: Record<string, string>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (d: Buffer) => chunks.push(d));
        res.on("end", () => {
          const headers: Record<string, string> = {};
          const raw = res.rawHeaders;
          for (let i = 0; i < raw.length; i += 2) {
            // node:http adds these itself, as it does for hsm-ca.
            if (!["date", "connection", "keep-alive", "content-length", "transfer-encoding"].includes(raw[i]!.toLowerCase())) headers[raw[i]!] = raw[i + 1]!;
          }
          resolve({ headers, body: Buffer.concat(chunks) });
        });
      })
      .on("error", reject);
  });
}

/** OCSPResponse { responseStatus ENUMERATED successful(0), responseBytes [0] ... }. */
function isSuccessful(der: Uint8Array): boolean {
  if (der[0] !== 0x30 || der.length < 10) return false;
  const at = der[1]! < 0x80 ? 2 : 2 + (der[1]! & 0x7f);
  return der[at] === 0x0a && der[at + 1] === 1 && der[at + 2] === 0 && der[at + 3] === 0xa0;
}

async function sameAsOpenssl(work: string, issuerPem: string, certPem: string, ours: Uint8Array, who: string): Promise<void> {
  const cert = path.join(work, `${who}-req-cert.pem`);
  const out = path.join(work, `${who}-req.der`);
  fs.writeFileSync(cert, certPem);
  await run("openssl", ["ocsp", "-issuer", issuerPem, "-cert", cert, "-no_nonce", "-reqout", out], { timeoutMs: 20_000 });
  if (!Buffer.from(ours).equals(fs.readFileSync(out))) throw new Error(`${who}: the bench's OCSP request differs from openssl's`);
}

/** `openssl ocsp -respin` on a sample: signature verified, status good. */
async function checkGood(work: string, who: string, responses: Uint8Array[], certPems: string[], issuerPem: string, trust: string[]): Promise<void> {
  const n = Math.min(OPENSSL_SAMPLE, responses.length);
  for (let k = 0; k < n; k++) {
    const i = Math.floor((k * responses.length) / n);
    const resp = path.join(work, `${who}-resp-${i}.der`);
    const cert = path.join(work, `${who}-cert-${i}.pem`);
    fs.writeFileSync(resp, responses[i]!);
    fs.writeFileSync(cert, certPems[i]!);
    const r = await run("openssl", ["ocsp", "-respin", resp, "-issuer", issuerPem, "-cert", cert, ...trust, "-no_nonce"], { timeoutMs: 20_000, check: false });
    if (r.code !== 0 || !r.stderr.includes("Response verify OK") || !r.stdout.includes(`${cert}: good`)) {
      throw new Error(`${who}: openssl does not accept the response for certificate ${i}: ${r.stdout} ${r.stderr}`);
    }
  }
}

/**
 * cfssl's OCSP responder: a software P-256 CA and delegated responder made by
 * cfssl, certificates made by cfssl, responses signed by `cfssl ocspsign`.
 */
async function cfsslPeer(work: string, section: Section): Promise<{ server: Background; url: string; requests: WrkRequest[] } | undefined> {
  if (!ensureTool("cfssl", "golang-cfssl") || !ensureTool("cfssljson", "golang-cfssl")) {
    section.notes.push("cfssl: not installed (Debian package `golang-cfssl`); no peer figure.");
    return undefined;
  }
  section.facts.cfssl = toolVersion("cfssl", ["version"], 3);
  const dir = path.join(work, "cfssl");
  fs.mkdirSync(dir);
  const w = (name: string, v: unknown) => fs.writeFileSync(path.join(dir, name), typeof v === "string" ? v : JSON.stringify(v));
  w("ca-csr.json", { CN: "bench cfssl CA", key: { algo: "ecdsa", size: 256 } });
  w("ocsp-csr.json", { CN: "bench cfssl OCSP responder", key: { algo: "ecdsa", size: 256 } });
  w("leaf-csr.json", { CN: "leaf.example.test", hosts: ["leaf.example.test"], key: { algo: "ecdsa", size: 256 } });
  w("config.json", {
    signing: {
      default: { expiry: "720h", usages: ["digital signature", "server auth"] },
      profiles: { ocsp: { expiry: "720h", usages: ["digital signature", "ocsp signing"] } },
    },
  });
  const sh = (script: string) => run("sh", ["-c", script], { cwd: dir, timeoutMs: 60_000 });
  await sh("cfssl gencert -initca ca-csr.json 2>/dev/null | cfssljson -bare ca");
  await sh("cfssl gencert -ca ca.pem -ca-key ca-key.pem -config config.json -profile ocsp ocsp-csr.json 2>/dev/null | cfssljson -bare ocsp");
  log(`OCSP: cfssl signing ${CFSSL_CERTIFICATES} certificates and their responses`);
  const leaves = await pool(CFSSL_CERTIFICATES, 2, async (i) => {
    const r = await run("cfssl", ["gencert", "-ca", "ca.pem", "-ca-key", "ca-key.pem", "-config", "config.json", "leaf-csr.json"], { cwd: dir, timeoutMs: 30_000 });
    const pem = (JSON.parse(r.stdout) as { cert: string }).cert;
    fs.writeFileSync(path.join(dir, `leaf-${i}.pem`), pem);
    const s = await run("cfssl", ["ocspsign", "-ca", "ca.pem", "-responder", "ocsp.pem", "-responder-key", "ocsp-key.pem", "-cert", `leaf-${i}.pem`, "-status", "good"], { cwd: dir, timeoutMs: 30_000 });
    return { pem, response: (JSON.parse(s.stdout) as { ocspResponse: string }).ocspResponse };
  });
  fs.writeFileSync(path.join(dir, "responses.txt"), leaves.map((l) => l.response).join("\n") + "\n");
  const caPem = path.join(dir, "ca.pem");
  const hashes = issuerHashes(new x509.X509Certificate(fs.readFileSync(caPem, "utf8")));
  const reqs = leaves.map((l) => ocspRequest(hashes, new x509.X509Certificate(l.pem).serialNumber.toLowerCase()));
  await sameAsOpenssl(work, caPem, leaves[0]!.pem, reqs[0]!, "cfssl");

  const port = await freePort();
  const server = Background.start("cfssl ocspserve", "cfssl", ["ocspserve", "-address", "127.0.0.1", "-port", String(port), "-responses", "responses.txt", "-loglevel", "3"], { cwd: dir });
  await waitForPort(port);
  const url = `http://127.0.0.1:${port}`;
  const bodies = await pool(reqs.length, 8, async (i) => {
    const r = await fetch(url + "/", { method: "POST", headers: OCSP_REQUEST, body: Buffer.from(reqs[i]!) });
    const body = new Uint8Array(await r.arrayBuffer());
    if (r.status !== 200 || !isSuccessful(body)) throw new Error(`cfssl answered ${r.status} (${body.length} bytes) for certificate ${i}`);
    return body;
  });
  await checkGood(work, "cfssl", bodies, leaves.map((l) => l.pem), caPem, ["-CAfile", caPem]);
  section.notes.push(`cfssl: all ${reqs.length} POST requests answered with a successful response; ${Math.min(OPENSSL_SAMPLE, reqs.length)} verified as \`good\` by openssl.`);
  return { server, url, requests: reqs.map((r) => ({ method: "POST", path: "/", headers: OCSP_REQUEST, body: r })) };
}
