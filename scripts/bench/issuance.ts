import crypto from "node:crypto";
import os from "node:os";
import fs from "node:fs";
import path from "node:path";
import * as x509 from "@peculiar/x509";
import postgres from "postgres";
import { count, desc, eq, sql } from "drizzle-orm";
import { createApiToken } from "../../src/auth/api-tokens.ts";
import { certificates } from "../../src/store/schema.ts";
import { machineBusyMs, postgresCpu, postgresCpuSince, processCpuMs } from "./cpu.ts";
import { Background, ensureTool, freePort, run, tempDir, waitForPort } from "./proc.ts";
import { RawSigner } from "./raw-sign.ts";
import { log, mib, num, ratio, type Section } from "./report.ts";
import { issuerTokenFromCli, startBenchService, startWorkersService, type BenchService } from "./service.ts";
import { buildStepCa, startStepCa, stepCaSign } from "./step-ca.ts";
import { describeErrors, runWrk, wrkErrors, type WrkRequest, type WrkResult } from "./wrk.ts";

/**
 * REST issuance end to end: wrk over HTTPS (keep-alive) posts CSRs to
 * /api/v1/certificates; each 201 is a certificate signed in SoftHSM2 and
 * stored in the database before the answer. Ceiling: the raw C_Sign rate of
 * the same token with the service's number of sessions, measured in the same
 * process right before. Peer: cfssl serve (software key, no database) under
 * the same load, when Debian's golang-cfssl is installed, and step-ca
 * (scripts/bench/step-ca.ts: built from Debian's source package, software
 * P-256 key, badger database) on its /1.0/sign with one-time JWK tokens.
 */

const CONCURRENCY = (process.env.BENCH_ISSUANCE_CLIENTS ?? "1,8,16,64").split(",").map(Number);
const DURATION_S = Number(process.env.BENCH_ISSUANCE_SECONDS ?? 10);
/** Warm-up before each server's runs (short smoke runs may shorten it). */
const WARMUP_S = Number(process.env.BENCH_ISSUANCE_WARMUP_SECONDS ?? 3);
/** Which servers run: hsm-ca (one process), workers, cfssl, step-ca; all by default. */
const SERVERS = new Set((process.env.BENCH_ISSUANCE_SERVERS ?? "hsm-ca,workers,cfssl,step-ca").split(","));
const CSRS = 256;
const SAMPLE = 20;
const TARGET_RPS = 2000;
const TARGET_P99_MS = 100;
const CORES = os.availableParallelism();

interface Run {
  server: string;
  clients: number;
  wrk: WrkResult;
  peakRssKiB?: number;
  stored?: number;
  /** CPU ms per answered certificate: the whole machine, and PostgreSQL's share. */
  machineCpuMs?: number;
  postgresCpuMs?: number;
  /** CPU ms per answered certificate of the server's own processes, its database server (PostgreSQL) included. */
  serverCpuMs?: number;
}

/** Runs wrk and notes what each answer cost the machine in CPU. */
export async function measured(
  options: Parameters<typeof runWrk>[0],
  serverCpuMs: () => number,
  withPostgres = true,
): Promise<{ wrk: WrkResult; machineCpuMs: number; postgresCpuMs?: number; serverCpuMs: number }> {
  const busy0 = machineBusyMs();
  const pg0 = postgresCpu();
  const server0 = serverCpuMs();
  const wrk = await runWrk(options);
  const n = Math.max(1, wrk.requests);
  const server = serverCpuMs() - server0;
  const pg = withPostgres ? postgresCpuSince(pg0) : undefined;
  return { wrk, machineCpuMs: (machineBusyMs() - busy0) / n, postgresCpuMs: pg === undefined ? undefined : pg / n, serverCpuMs: (server + (pg ?? 0)) / n };
}

/** This process's CPU ms (the in-process service; the bench itself idles while wrk runs). */
export const ownCpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** What the i-th CSR asks for: its subject (an X.500 name string) and subject alternative names. */
export interface CsrNames {
  subject: string;
  sans: x509.JsonGeneralNames;
}

/** A workload of a fleet: CN and DNS SAN workload-<i>.bench.svc (tls-server's names). */
const workloadNames = (i: number): CsrNames => ({ subject: `CN=workload-${i}.bench.svc`, sans: [{ type: "dns", value: `workload-${i}.bench.svc` }] });

/** P-256 CSRs for distinct names and keys, as a fleet of workloads would send (or other names, from `namesOf`). */
export async function makeCsrs(n: number, namesOf: (i: number) => CsrNames = workloadNames): Promise<string[]> {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const keys = (await crypto.webcrypto.subtle.generateKey(alg, false, ["sign", "verify"])) as CryptoKeyPair;
    const { subject, sans } = namesOf(i);
    const csr = await x509.Pkcs10CertificateRequestGenerator.create(
      { name: subject, keys, signingAlgorithm: alg, extensions: [new x509.SubjectAlternativeNameExtension(sans)] },
      crypto.webcrypto as Crypto,
    );
    out.push(csr.toString("pem"));
  }
  return out;
}

/** wrk's requests: each CSR posted to the REST API for a 1-hour tls-server certificate. */
export function issuanceRequests(csrs: string[], tokenSecret: string): WrkRequest[] {
  return csrs.map((csr) => ({
    method: "POST",
    path: "/api/v1/certificates",
    headers: { authorization: `Bearer ${tokenSecret}`, "content-type": "application/json" },
    body: Buffer.from(JSON.stringify({ csr, profile: "tls-server", validity: "1h" })),
  }));
}

/** Samples this process's RSS every 100 ms until stopped; returns the peak in KiB. */
function rssSampler(): () => number {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 100);
  return () => {
    clearInterval(timer);
    return Math.round(Math.max(peak, process.memoryUsage.rss()) / 1024);
  };
}

async function storedCount(bench: BenchService): Promise<number> {
  const [row] = await bench.service.ctx.store.db.select({ n: count() }).from(certificates).where(eq(certificates.profile, "tls-server"));
  return row!.n;
}

/** openssl verify for the newest certificates, and no serial twice. */
async function checkStored(bench: BenchService, dir: string): Promise<string[]> {
  const db = bench.service.ctx.store.db;
  const issuer = bench.service.ctx.issuer();
  const rootFile = path.join(dir, "root.pem");
  const chainFile = path.join(dir, "chain.pem");
  fs.writeFileSync(rootFile, issuer.rootPem);
  fs.writeFileSync(chainFile, issuer.chainPem);
  const failed: string[] = [];
  const rows = await db.select({ serial: certificates.serial, pem: certificates.certificatePem }).from(certificates).orderBy(desc(certificates.id)).limit(SAMPLE);
  for (const r of rows) {
    const f = path.join(dir, `${r.serial}.pem`);
    fs.writeFileSync(f, r.pem);
    const v = await run("openssl", ["verify", "-CAfile", rootFile, "-untrusted", chainFile, "-purpose", "sslserver", f]);
    if (v.code !== 0 || !v.stdout.includes(": OK")) failed.push(`openssl verify failed for ${r.serial}: ${v.stdout}${v.stderr}`);
  }
  const [dup] = await db.select({ total: count(), distinct: sql<number>`count(distinct ${certificates.serial})::int` }).from(certificates);
  if (dup!.total !== Number(dup!.distinct)) failed.push(`${dup!.total - Number(dup!.distinct)} repeated serials`);
  return failed;
}

async function benchService(database: "postgres" | "pglite", csrs: string[], dir: string): Promise<{ runs: Run[]; ceiling: number; failed: string[]; notes: string[]; dbVersion: string }> {
  const bench = await startBenchService({ HSM_CA_LOG_LEVEL: "error" }, database);
  const notes: string[] = [];
  try {
    const { service } = bench;
    const issuer = service.ctx.issuer();
    const token = await createApiToken(service.ctx.store.db, { role: "issuer", profiles: ["tls-server"], description: "bench" });
    const requests = issuanceRequests(csrs, token.secret);
    const raw = new RawSigner(bench.config.hsm, issuer.row.keyLabel, bench.config.hsm.sessions);
    let ceiling: number;
    try {
      await raw.rate(500);
      ceiling = Math.max(await raw.rate(3000), await raw.rate(3000));
    } finally {
      raw.close();
    }
    log(`issuance (${bench.db.kind}): raw C_Sign ceiling ${num(ceiling)}/s`);
    await runWrk({ target: service.httpsUrl, requests, connections: 16, threads: 2, durationS: WARMUP_S });
    const runs: Run[] = [];
    for (const clients of CONCURRENCY) {
      const before = await storedCount(bench);
      const stop = rssSampler();
      const { wrk, machineCpuMs, postgresCpuMs, serverCpuMs } = await measured(
        { target: service.httpsUrl, requests, connections: clients, threads: Math.min(2, clients), durationS: DURATION_S, timeoutS: 5 },
        ownCpuMs,
        bench.db.kind === "postgres",
      );
      const peakRssKiB = stop();
      const stored = (await storedCount(bench)) - before;
      runs.push({ server: `hsm-ca (${bench.db.kind})`, clients, wrk, peakRssKiB, stored, machineCpuMs, postgresCpuMs, serverCpuMs });
      log(`issuance (${bench.db.kind}) ${clients} clients: ${num(wrk.rps)}/s p50 ${num(wrk.p50Ms)} ms p99 ${num(wrk.p99Ms)} ms, ${describeErrors(wrk)}`);
    }
    const failed = await checkStored(bench, dir);
    for (const r of runs) {
      if (wrkErrors(r.wrk) > 0) failed.push(`${r.server} at ${r.clients} clients: ${describeErrors(r.wrk)}`);
      // wrk counts the answers it read; a request in flight when it stopped may be stored without being counted.
      if (r.stored! < r.wrk.requests) failed.push(`${r.server} at ${r.clients} clients: ${r.wrk.requests} answers but only ${r.stored} new rows`);
    }
    notes.push(`${bench.db.kind}: every answer was a 201 and every answered certificate is in the database (${runs.map((r) => `${r.stored} rows for ${r.wrk.requests} answers`).join("; ")}); the ${SAMPLE} newest pass \`openssl verify -purpose sslserver\` against the root and chain; no serial repeats.`);
    return { runs, ceiling, failed, notes, dbVersion: bench.db.version };
  } finally {
    await bench.cleanup();
  }
}

const WORKERS = Number(process.env.BENCH_ISSUANCE_WORKERS ?? 2);

/**
 * The same load against `hsm-ca serve` with HSM_CA_WORKERS processes
 * sharing the listeners (node:cluster), run as a user runs it; RSS is the
 * primary's and its workers' together.
 */
async function benchWorkers(csrs: string[], dir: string): Promise<{ runs: Run[]; failed: string[]; notes: string[] }> {
  const w = await startWorkersService(WORKERS, await freePort(), await freePort());
  const sql = postgres(w.db.url!, { max: 2, onnotice: () => {} });
  try {
    const requests = issuanceRequests(csrs, await issuerTokenFromCli(w.env));
    const stored = async () => Number((await sql`select count(*)::int as n from certificates where profile = 'tls-server'`)[0]!.n);
    await runWrk({ target: w.httpsUrl, requests, connections: 16, threads: 2, durationS: WARMUP_S });
    const runs: Run[] = [];
    const failed: string[] = [];
    for (const clients of CONCURRENCY) {
      const before = await stored();
      let peak = w.rssKiB();
      const timer = setInterval(() => (peak = Math.max(peak, w.rssKiB())), 200);
      const { wrk, machineCpuMs, postgresCpuMs, serverCpuMs } = await measured(
        { target: w.httpsUrl, requests, connections: clients, threads: Math.min(2, clients), durationS: DURATION_S, timeoutS: 5 },
        () => w.cpuMs(),
      );
      clearInterval(timer);
      const r: Run = { server: `hsm-ca (postgres, ${WORKERS} workers)`, clients, wrk, peakRssKiB: Math.max(peak, w.rssKiB()), stored: (await stored()) - before, machineCpuMs, postgresCpuMs, serverCpuMs };
      runs.push(r);
      log(`issuance (${WORKERS} workers) ${clients} clients: ${num(wrk.rps)}/s p50 ${num(wrk.p50Ms)} ms p99 ${num(wrk.p99Ms)} ms, ${describeErrors(wrk)}`);
      if (wrkErrors(wrk) > 0) failed.push(`${r.server} at ${clients} clients: ${describeErrors(wrk)}`);
      if (r.stored! < wrk.requests) failed.push(`${r.server} at ${clients} clients: ${wrk.requests} answers but only ${r.stored} new rows`);
    }
    const root = await (await fetch(`${w.httpUrl}/ca/root.pem`)).text();
    const chain = await (await fetch(`${w.httpUrl}/ca/chain.pem`)).text();
    fs.writeFileSync(path.join(dir, "w-root.pem"), root);
    fs.writeFileSync(path.join(dir, "w-chain.pem"), chain);
    const sample = await sql`select serial, certificate_pem from certificates where profile = 'tls-server' order by id desc limit ${SAMPLE}`;
    for (const row of sample) {
      const f = path.join(dir, `w-${row.serial}.pem`);
      fs.writeFileSync(f, row.certificate_pem as string);
      const v = await run("openssl", ["verify", "-CAfile", path.join(dir, "w-root.pem"), "-untrusted", path.join(dir, "w-chain.pem"), "-purpose", "sslserver", f]);
      if (v.code !== 0) failed.push(`openssl verify failed for ${row.serial}: ${v.stdout}${v.stderr}`);
    }
    const [dup] = await sql`select count(*)::int as total, count(distinct serial)::int as distinct from certificates`;
    if (dup!.total !== dup!.distinct) failed.push(`${dup!.total - dup!.distinct} repeated serials`);
    return {
      runs,
      failed,
      notes: [
        `${WORKERS} workers: every answer was a 201 and is in the database (${runs.map((r) => `${r.stored} rows for ${r.wrk.requests} answers`).join("; ")}); the ${SAMPLE} newest pass \`openssl verify\`; no serial repeats.`,
      ],
    };
  } finally {
    await sql.end({ timeout: 5 });
    await w.cleanup();
  }
}

/** cfssl serve with a software P-256 CA key, over TLS, under the same load. */
async function benchCfssl(csrs: string[], dir: string): Promise<{ runs: Run[]; version: string; failed: string[]; notes: string[] } | undefined> {
  if (!ensureTool("cfssl", "golang-cfssl") || !ensureTool("cfssljson", "golang-cfssl")) return undefined;
  const version = (await run("cfssl", ["version"])).stdout.split("\n").slice(0, 2).join(", ").trim();
  const cwd = path.join(dir, "cfssl");
  fs.mkdirSync(cwd);
  fs.writeFileSync(path.join(cwd, "ca-csr.json"), JSON.stringify({ CN: "cfssl bench CA", key: { algo: "ecdsa", size: 256 } }));
  const init = await run("sh", ["-c", "cfssl gencert -initca ca-csr.json | cfssljson -bare ca"], { cwd });
  if (init.code !== 0) throw new Error(`cfssl gencert failed: ${init.stderr}`);
  fs.writeFileSync(path.join(cwd, "config.json"), JSON.stringify({ signing: { default: { expiry: "1h", usages: ["digital signature", "server auth"] } } }));
  // TLS for the listener, as hsm-ca serves HTTPS: a self-signed P-256 certificate from openssl.
  await run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "tls-key.pem", "-out", "tls.pem", "-subj", "/CN=127.0.0.1", "-days", "1"], { cwd, check: true });
  const port = await freePort();
  const server = Background.start("cfssl serve", "cfssl", ["serve", "-address", "127.0.0.1", "-port", String(port), "-ca", "ca.pem", "-ca-key", "ca-key.pem", "-config", "config.json", "-tls-cert", "tls.pem", "-tls-key", "tls-key.pem", "-loglevel", "5"], { cwd });
  const failed: string[] = [];
  try {
    await waitForPort(port);
    const target = `https://127.0.0.1:${port}`;
    const requests: WrkRequest[] = csrs.map((csr) => ({
      method: "POST",
      path: "/api/v1/cfssl/sign",
      headers: { "content-type": "application/json" },
      body: Buffer.from(JSON.stringify({ certificate_request: csr })),
    }));
    // cfssl answers 200 with {success: true, result: {certificate}}: check one before timing.
    const probe = await fetchJson(`${target}/api/v1/cfssl/sign`, requests[0]!.body!);
    if (!probe.success) failed.push(`cfssl sign failed: ${JSON.stringify(probe.errors)}`);
    await runWrk({ target, requests, connections: 16, threads: 2, durationS: WARMUP_S });
    const runs: Run[] = [];
    const pid = server.child.pid!;
    for (const clients of CONCURRENCY) {
      const { wrk, machineCpuMs, serverCpuMs } = await measured({ target, requests, connections: clients, threads: Math.min(2, clients), durationS: DURATION_S, timeoutS: 5 }, () => processCpuMs(pid), false);
      const peakRssKiB = peakRss(pid);
      runs.push({ server: "peer: cfssl serve", clients, wrk, machineCpuMs, serverCpuMs, peakRssKiB });
      log(`issuance cfssl ${clients} clients: ${num(wrk.rps)}/s p50 ${num(wrk.p50Ms)} ms p99 ${num(wrk.p99Ms)} ms`);
      if (wrkErrors(wrk) > 0) failed.push(`cfssl at ${clients} clients: ${describeErrors(wrk)}`);
    }
    // A sample of its certificates, verified as hsm-ca's are (cfssl keeps none: these are signed for the check).
    const sample: string[] = [];
    for (let i = 0; i < SAMPLE; i++) {
      const res = await fetchJson(`${target}/api/v1/cfssl/sign`, requests[i % requests.length]!.body!);
      if (res.success && res.result?.certificate) sample.push(res.result.certificate);
      else failed.push(`cfssl sign for the sample failed: ${JSON.stringify(res.errors)}`);
    }
    failed.push(...(await verifySample("cfssl", sample, path.join(cwd, "ca.pem"), undefined, dir)));
    return { runs, version, failed, notes: [`cfssl: every answer was a 200; ${sample.length} more certificates signed after the runs pass \`openssl verify -purpose sslserver\` against its CA certificate, no serial twice (cfssl stores nothing).`] };
  } finally {
    await server.stop();
  }
}

/**
 * step-ca's POST /1.0/sign under the same load: each request a CSR of the
 * cycle with a one-time token of the JWK provisioner (step-ca refuses a
 * token twice), minted before each timed window, every request sent once.
 */
async function benchStepCa(csrs: string[], dir: string): Promise<{ runs: Run[]; version: string; failed: string[]; notes: string[] } | string> {
  const build = await buildStepCa();
  if (typeof build === "string") return build;
  let ca: Awaited<ReturnType<typeof startStepCa>>;
  try {
    ca = await startStepCa(build, path.join(dir, "step-ca"));
  } catch (err) {
    return `step-ca did not start: ${(err as Error).message.slice(0, 400)}`;
  }
  const failed: string[] = [];
  try {
    const nameOf = (i: number) => `workload-${i % csrs.length}.bench.svc`;
    // Tokens enough for `rate` answers a second over `seconds`, with room: a thread that runs out fails the run.
    const requestsFor = (rate: number, seconds: number): WrkRequest[] => {
      const n = Math.ceil(rate * seconds * 2.5) + 1000;
      const names = Array.from({ length: n }, (_, i) => nameOf(i));
      const tokens = ca.tokens(names);
      return names.map((name, i) => ({ method: "POST", path: "/1.0/sign", headers: { "content-type": "application/json" }, body: Buffer.from(ca.signBody(csrs[i % csrs.length]!, name, tokens[i]!)) }));
    };
    const probe = await stepCaSign(ca, ca.signBody(csrs[0]!, nameOf(0), ca.tokens([nameOf(0)])[0]!));
    if (probe.status !== 201) failed.push(`step-ca sign failed: HTTP ${probe.status} ${probe.text.slice(0, 300)}`);
    const target = ca.url;
    const warm = await runWrk({ target, requests: requestsFor(3000, WARMUP_S), connections: 16, threads: 2, durationS: WARMUP_S, once: true });
    let expected = Math.max(warm.rps, 500);
    const runs: Run[] = [];
    for (const clients of CONCURRENCY) {
      const requests = requestsFor(expected, DURATION_S);
      const { wrk, machineCpuMs, serverCpuMs } = await measured(
        { target, requests, connections: clients, threads: Math.min(2, clients), durationS: DURATION_S, timeoutS: 5, once: true },
        () => processCpuMs(ca.pid),
        false,
      );
      expected = Math.max(expected, wrk.rps);
      runs.push({ server: "peer: step-ca", clients, wrk, machineCpuMs, serverCpuMs, peakRssKiB: peakRss(ca.pid) });
      log(`issuance step-ca ${clients} clients: ${num(wrk.rps)}/s p50 ${num(wrk.p50Ms)} ms p99 ${num(wrk.p99Ms)} ms, ${describeErrors(wrk)}`);
      if (wrk.exhausted > 0) failed.push(`step-ca at ${clients} clients: wrk ran out of one-time tokens (${wrk.exhausted} requests without one)`);
      else if (wrkErrors(wrk) > 0) failed.push(`step-ca at ${clients} clients: ${describeErrors(wrk)}`);
    }
    const sample: string[] = [];
    const sampleTokens = ca.tokens(Array.from({ length: SAMPLE }, (_, i) => nameOf(i)));
    for (let i = 0; i < SAMPLE; i++) {
      const res = await stepCaSign(ca, ca.signBody(csrs[i]!, nameOf(i), sampleTokens[i]!));
      if (res.status === 201 && res.crt) sample.push(res.crt);
      else failed.push(`step-ca sign for the sample: HTTP ${res.status} ${res.text.slice(0, 200)}`);
    }
    fs.writeFileSync(path.join(dir, "step-root.pem"), ca.rootPem);
    fs.writeFileSync(path.join(dir, "step-intermediate.pem"), ca.intermediatePem);
    failed.push(...(await verifySample("step-ca", sample, path.join(dir, "step-root.pem"), path.join(dir, "step-intermediate.pem"), dir)));
    return {
      runs,
      version: build.version,
      failed,
      notes: [
        `step-ca: every answer was a 201, each request carried a token used once (${runs.map((r) => `${r.wrk.requests} at ${r.clients} clients`).join("; ")}); step-ca stores each certificate and each used token in its badger database before answering; ${sample.length} more signed after the runs pass \`openssl verify -purpose sslserver\` against its root and intermediate, no serial twice.`,
      ],
    };
  } catch (err) {
    failed.push(`step-ca: ${(err as Error).message}; its log: ${ca.output().slice(-800)}`);
    return { runs: [], version: build.version, failed, notes: [] };
  } finally {
    await ca.stop();
  }
}

/** Peak RSS stands in as the RSS after the run for a peer (a Go server's heap does not shrink quickly), KiB. */
function peakRss(pid: number): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** openssl verify for each leaf against root (and intermediate), and no serial twice. */
async function verifySample(who: string, leaves: string[], rootFile: string, intermediateFile: string | undefined, dir: string): Promise<string[]> {
  const failed: string[] = [];
  const serials = new Set<string>();
  for (const [i, pem] of leaves.entries()) {
    const f = path.join(dir, `${who}-sample-${i}.pem`);
    fs.writeFileSync(f, pem);
    const v = await run("openssl", ["verify", "-CAfile", rootFile, ...(intermediateFile ? ["-untrusted", intermediateFile] : []), "-purpose", "sslserver", f], { check: false });
    if (v.code !== 0 || !v.stdout.includes(": OK")) failed.push(`${who}: openssl verify failed: ${v.stdout}${v.stderr}`);
    serials.add(new x509.X509Certificate(pem).serialNumber);
  }
  if (serials.size !== leaves.length) failed.push(`${who}: ${leaves.length - serials.size} repeated serials in the sample`);
  return failed;
}

async function fetchJson(url: string, body: Uint8Array): Promise<{ success?: boolean; errors?: unknown; result?: { certificate?: string } }> {
  const prev = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
  // The peer's throwaway self-signed listener, on loopback, for one probe.
  process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";
  try {
    const res = await fetch(url, { method: "POST", body: Buffer.from(body), headers: { "content-type": "application/json" } });
    return (await res.json()) as { success?: boolean };
  } finally {
    if (prev === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    else process.env.NODE_TLS_REJECT_UNAUTHORIZED = prev;
  }
}

/**
 * PostgreSQL with the cfssl peer, or PGlite alone: a process can hold one
 * SoftHSM2 configuration, so each database gets a benchmark (and a process) of its own.
 */
export async function runIssuance(database: "postgres" | "pglite"): Promise<Section> {
  const name = database === "postgres" ? "issuance" : "issuance-pglite";
  if (!ensureTool("wrk", "wrk")) return { name, title: "", summary: "", tables: [], facts: {}, notes: [], skipped: "wrk is not installed" };
  const dir = tempDir("hsmca-bench-issue-");
  try {
    const csrs = await makeCsrs(CSRS);
    const pg = database === "pglite" || SERVERS.has("hsm-ca") ? await benchService(database, csrs, dir) : undefined;
    const postgres = database === "postgres";
    const workers = postgres && WORKERS > 1 && SERVERS.has("workers") ? await benchWorkers(csrs, dir) : undefined;
    const cfssl = postgres && SERVERS.has("cfssl") ? await benchCfssl(csrs, dir) : undefined;
    const stepOut = postgres && SERVERS.has("step-ca") ? await benchStepCa(csrs, dir) : undefined;
    const stepCa = typeof stepOut === "string" ? undefined : stepOut;
    if (typeof stepOut === "string") log(`issuance: step-ca skipped: ${stepOut}`);
    const failed = [...(pg?.failed ?? []), ...(workers?.failed ?? []), ...(cfssl?.failed ?? []), ...(stepCa?.failed ?? [])];
    const ceiling = pg?.ceiling;
    const cfsslAt = (clients: number) => cfssl?.runs.find((r) => r.clients === clients)?.wrk.rps;
    const stepAt = (clients: number) => stepCa?.runs.find((r) => r.clients === clients);
    const rows = (runs: Run[]) =>
      runs.map((r) => [
        r.server,
        r.clients,
        num(r.wrk.rps),
        ceiling ? ratio(r.wrk.rps, ceiling) : "",
        r.server === "peer: cfssl serve" ? "1×" : ratio(r.wrk.rps, cfsslAt(r.clients)),
        r.server === "peer: step-ca" ? "1×" : ratio(r.wrk.rps, stepAt(r.clients)?.wrk.rps),
        num(r.wrk.p50Ms),
        num(r.wrk.p99Ms),
        r.peakRssKiB ? mib(r.peakRssKiB) : "",
        r.serverCpuMs === undefined ? "" : num(r.serverCpuMs),
        r.machineCpuMs === undefined ? "" : num(r.machineCpuMs),
        r.postgresCpuMs === undefined ? "" : num(r.postgresCpuMs),
        // What the machine's cores could answer at this cost per certificate, were they all busy with it.
        r.machineCpuMs === undefined ? "" : num((CORES * 1000) / r.machineCpuMs),
      ]);
    // The target is for the service as configured for load: the better of one process and workers.
    const ours = [...(pg?.runs ?? []), ...(workers?.runs ?? [])];
    const bestAt = (clients: number) => ours.filter((r) => r.clients === clients).sort((a, b) => b.wrk.rps - a.wrk.rps)[0];
    const at64 = bestAt(64);
    const verdict = at64
      ? at64.wrk.rps >= TARGET_RPS && at64.wrk.p99Ms < TARGET_P99_MS
        ? `met by ${at64.server}: ${num(at64.wrk.rps)}/s, p99 ${num(at64.wrk.p99Ms)} ms`
        : `missed (best: ${at64.server}): ${num(at64.wrk.rps)}/s (${ratio(at64.wrk.rps, TARGET_RPS)} of ${TARGET_RPS}), p99 ${num(at64.wrk.p99Ms)} ms (target < ${TARGET_P99_MS} ms)`
      : "not measured at 64 clients";
    const peerTargets: Array<[string, string]> = [];
    const step64 = stepAt(64);
    if (at64 && step64) {
      const ok = at64.wrk.rps >= step64.wrk.rps && at64.wrk.p99Ms < step64.wrk.p99Ms;
      peerTargets.push([
        "≥ 1.0× step-ca /1.0/sign at 64 clients, p99 below step-ca's",
        `${ok ? "met" : "missed"}: ${at64.server} ${num(at64.wrk.rps)}/s (${ratio(at64.wrk.rps, step64.wrk.rps)} of step-ca's ${num(step64.wrk.rps)}/s), p99 ${num(at64.wrk.p99Ms)} ms vs ${num(step64.wrk.p99Ms)} ms`,
      ]);
    }
    const cfssl64 = cfsslAt(64);
    if (at64 && cfssl64) peerTargets.push(["≥ 0.5× cfssl serve at 64 clients", `${at64.wrk.rps >= 0.5 * cfssl64 ? "met" : "missed"}: ${ratio(at64.wrk.rps, cfssl64)}`]);
    if (at64?.serverCpuMs !== undefined) {
      peerTargets.push([
        "server CPU ≤ 0.6 ms per certificate at 64 clients (service + PostgreSQL)",
        `${at64.serverCpuMs <= 0.6 ? "met" : "missed"}: ${num(at64.serverCpuMs)} ms (${at64.server})${step64?.serverCpuMs !== undefined ? `; step-ca ${num(step64.serverCpuMs)} ms` : ""}`,
      ]);
    }
    const peersTable =
      stepCa || cfssl
        ? [
            {
              caption: "hsm-ca (the better of one process and workers at each concurrency) against the peers, same run, same wrk load:",
              headers: ["clients", "hsm-ca certificates/s", "step-ca", "hsm-ca/step-ca", "cfssl", "hsm-ca/cfssl", "p99 ms hsm-ca", "p99 step-ca", "server CPU ms/cert hsm-ca", "step-ca", "cfssl"],
              rows: CONCURRENCY.map((c) => {
                const o = bestAt(c);
                const st = stepAt(c);
                const cf = cfssl?.runs.find((r) => r.clients === c);
                return [
                  c,
                  o ? num(o.wrk.rps) : "n/a",
                  st ? num(st.wrk.rps) : "n/a",
                  ratio(o?.wrk.rps, st?.wrk.rps),
                  cf ? num(cf.wrk.rps) : "n/a",
                  ratio(o?.wrk.rps, cf?.wrk.rps),
                  o ? num(o.wrk.p99Ms) : "n/a",
                  st ? num(st.wrk.p99Ms) : "n/a",
                  o?.serverCpuMs === undefined ? "n/a" : num(o.serverCpuMs),
                  st?.serverCpuMs === undefined ? "n/a" : num(st.serverCpuMs),
                  cf?.serverCpuMs === undefined ? "n/a" : num(cf.serverCpuMs),
                ];
              }),
            },
          ]
        : [];
    const missing: string[] = [];
    if (postgres && SERVERS.has("cfssl") && !cfssl) missing.push("cfssl is not installed (`apt-get install golang-cfssl`): no cfssl figures.");
    if (typeof stepOut === "string") missing.push(`step-ca skipped: ${stepOut}.`);
    return {
      name,
      title: `REST issuance end to end (${postgres ? "PostgreSQL" : "PGlite"})`,
      summary: `wrk posts ${CSRS} distinct P-256 CSRs in a cycle (tls-server profile, 1-hour validity, an issuer token) to
\`POST /api/v1/certificates\` over HTTPS with keep-alive, ${DURATION_S} s per concurrency after a ${WARMUP_S} s warm-up. Every 201 is a
certificate signed by the intermediate's P-256 key in SoftHSM2 and inserted into the database before the answer. The ceiling
is the raw C_Sign rate of the same token and key with the service's number of sessions (\`npm run bench -- signing\`
measures the same ceiling), taken in the same process just before. Peak RSS is the service process's (the benchmark runs it
in-process; wrk is a separate process). On PostgreSQL the same load also goes to \`hsm-ca serve\` with
HSM_CA_WORKERS=${WORKERS} (node:cluster workers sharing the listeners, run as a user runs it; RSS of all its processes). The peers,
under the same load: cfssl serve (Go, software P-256 key, no database, TLS), and step-ca (Go, smallstep/certificates built from
Debian's source package by the bench, software P-256 root and intermediate, badger database) on \`POST /1.0/sign\`, each request
a CSR of the same cycle with its own one-time token of a JWK provisioner, minted before the timed window (wrk sends each once).
Load generator, database and servers share the machine's cores. "Server CPU ms/cert" is the CPU time of the server's own
processes (for hsm-ca with PostgreSQL's server processes added) per certificate answered; "machine CPU ms/cert" the busy time
of all cores (/proc/stat) during the run divided by the certificates answered (the load generator included), "of which
PostgreSQL" its server processes' share, and "CPU bound/s" what the cores could answer at that machine cost if nothing else
ran: where the rate is close to it, CPU per certificate is what bounds it. A peer's peak RSS is its process's high-water mark
so far.`,
      tables: [
        {
          headers: ["server", "clients", "certificates/s", "vs raw C_Sign", "vs cfssl", "vs step-ca", "p50 ms", "p99 ms", "peak RSS", "server CPU ms/cert", "machine CPU ms/cert", "of which PostgreSQL", "CPU bound/s"],
          rows: [...rows(pg?.runs ?? []), ...rows(workers?.runs ?? []), ...rows(cfssl?.runs ?? []), ...rows(stepCa?.runs ?? [])],
        },
        ...peersTable,
        {
          caption: "Targets:",
          headers: ["target", "result"],
          rows: [
            [`≥ ${TARGET_RPS}/s at 64 clients with p99 < ${TARGET_P99_MS} ms`, postgres ? verdict : `${verdict} (the target is for PostgreSQL; PGlite is the single-process embedded default)`],
            ...peerTargets,
            ["raw C_Sign ceiling", ceiling ? `${num(ceiling)}/s` : "not measured"],
          ],
        },
      ],
      facts: {
        ...(pg ? { database: pg.dbVersion } : {}),
        ...(cfssl ? { cfssl: cfssl.version } : {}),
        ...(stepCa ? { "step-ca": stepCa.version } : {}),
        "HSM_CA_HSM_SESSIONS": "default",
        "wrk threads": "min(2, clients)",
      },
      notes: [...(pg?.notes ?? []), ...(workers?.notes ?? []), ...(cfssl?.notes ?? []), ...(stepCa?.notes ?? []), ...missing],
      failed: failed.length ? failed : undefined,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
