import fs from "node:fs";
import https from "node:https";
import path from "node:path";
import { count, desc, sql } from "drizzle-orm";
import YAML from "yaml";
import { createApiToken } from "../../src/auth/api-tokens.ts";
import { lintEnabled, setLintEnabled } from "../../src/lint/gate.ts";
import { certificates } from "../../src/store/schema.ts";
import { issuanceRequests, makeCsrs, measured, ownCpuMs } from "./issuance.ts";
import { ensureTool, run, tempDir } from "./proc.ts";
import { log, num, ratio, REPO, type Section } from "./report.ts";
import { startBenchService, type BenchService } from "./service.ts";
import { describeErrors, runWrk, wrkErrors, type WrkRequest, type WrkResult } from "./wrk.ts";

/**
 * The issuance paths added after REST issuance (issue 17: within 10% of it),
 * each against REST in the same process, same database, same wrk load:
 * - REST with the lint gate off (setLintEnabled(false): what the gate costs);
 * - the Vault-compatible API, POST /v1/<mount>/sign/tls-server;
 * - a CA profile: sub-CA certificates through REST with isCA: true, from a
 *   copy of mesh-intermediate with approvals 0 (written by the bench into a
 *   temp profiles directory).
 * The paths take turns in rounds (drift hits each alike); the best round of
 * each counts.
 */

const CLIENTS = Number(process.env.BENCH_PATHS_CLIENTS ?? 64);
const DURATION_S = Number(process.env.BENCH_PATHS_SECONDS ?? 10);
const ROUNDS = Number(process.env.BENCH_PATHS_ROUNDS ?? 2);
const WARMUP_S = Number(process.env.BENCH_PATHS_WARMUP_SECONDS ?? 2);
const CSRS = 256;
/** The newest certificates of each run that openssl verifies. */
const SAMPLE = 5;
/** Each path at this share of REST's rate or more (issue 17). */
const TARGET = 0.9;
const LEAF_PROFILE = "tls-server";
const CA_PROFILE = "bench-mesh-intermediate";

interface IssuancePath {
  /** The table's label. */
  label: string;
  requests: WrkRequest[];
  /** The profile its certificates are stored under. */
  profile: string;
  /** Sub-CA certificates (verified as CAs) rather than tls-server leaves. */
  ca: boolean;
  /** The certificate in a 2xx answer's JSON: REST's `certificate`, Vault's `data.certificate`. */
  certificateOf(answer: unknown): string | undefined;
  /** Runs a measurement in the path's setting (the lint gate off). */
  around?<T>(measure: () => Promise<T>): Promise<T>;
}

interface PathRun {
  wrk: WrkResult;
  /** New rows in `certificates` during the run. */
  stored: number;
  serverCpuMs: number;
  machineCpuMs: number;
}

interface StoredSample {
  serial: string;
  profile: string;
  pem: string;
}

const restCertificate = (a: unknown) => (a as { certificate?: string }).certificate;
const vaultCertificate = (a: unknown) => (a as { data?: { certificate?: string } }).data?.certificate;

/** A sub-CA of a mesh whose names lie inside mesh-intermediate's constraints: its trust domain's SPIFFE ID and a cluster.local DNS name. */
const meshCaNames = (i: number) => ({
  subject: `CN=Mesh CA bench-${i},O=hsm-ca bench`,
  sans: [
    { type: "dns" as const, value: `identity-${i}.linkerd.cluster.local` },
    { type: "url" as const, value: "spiffe://cluster.local" },
  ],
});

/**
 * A copy of the repository's profiles plus bench-mesh-intermediate:
 * mesh-intermediate with approvals 0, so that a sub-CA is issued at once (201)
 * rather than waiting for two admins (202).
 */
function benchProfilesDir(dir: string): string {
  const profilesDir = path.join(dir, "profiles");
  fs.cpSync(path.join(REPO, "profiles"), profilesDir, { recursive: true });
  const mesh = YAML.parse(fs.readFileSync(path.join(profilesDir, "mesh-intermediate.yaml"), "utf8")) as Record<string, unknown>;
  const bench = { ...mesh, name: CA_PROFILE, description: "mesh-intermediate without approvals: the issuance-paths benchmark's CA profile", approvals: { required: 0 } };
  fs.writeFileSync(path.join(profilesDir, `${CA_PROFILE}.yaml`), YAML.stringify(bench));
  return profilesDir;
}

/** One POST over the service's HTTPS listener (its certificate chains to the CA's root): status and JSON answer. */
function post(url: string, request: WrkRequest, rootPem: string): Promise<{ status: number; answer: unknown; text: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(new URL(request.path, url), { method: request.method, headers: request.headers, ca: rootPem }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let answer: unknown;
        try {
          answer = JSON.parse(text);
        } catch {
          answer = undefined;
        }
        resolve({ status: res.statusCode ?? 0, answer, text });
      });
    });
    req.on("error", reject);
    req.end(request.body ? Buffer.from(request.body) : undefined);
  });
}

async function storedRows(bench: BenchService): Promise<number> {
  const [row] = await bench.service.ctx.store.db.select({ n: count() }).from(certificates);
  return row!.n;
}

async function newestRows(bench: BenchService): Promise<StoredSample[]> {
  return bench.service.ctx.store.db
    .select({ serial: certificates.serial, profile: certificates.profile, pem: certificates.certificatePem })
    .from(certificates)
    .orderBy(desc(certificates.id))
    .limit(SAMPLE);
}

/** openssl verify against the root and chain the service publishes; a sub-CA also as CA:TRUE, pathlen:0. */
async function verifySample(p: IssuancePath, rows: StoredSample[], rootFile: string, chainFile: string, dir: string): Promise<string[]> {
  const failed: string[] = [];
  for (const r of rows) {
    if (r.profile !== p.profile) failed.push(`${p.label}: the newest row ${r.serial} is of profile ${r.profile}, not ${p.profile}`);
    const f = path.join(dir, `${r.serial}.pem`);
    fs.writeFileSync(f, r.pem);
    const v = await run("openssl", ["verify", "-CAfile", rootFile, "-untrusted", chainFile, "-purpose", p.ca ? "any" : "sslserver", f]);
    if (v.code !== 0 || !v.stdout.includes(": OK")) failed.push(`${p.label}: openssl verify failed for ${r.serial}: ${v.stdout}${v.stderr}`);
    if (p.ca) {
      const text = (await run("openssl", ["x509", "-noout", "-text", "-in", f])).stdout;
      if (!/CA:TRUE, pathlen:0/.test(text)) failed.push(`${p.label}: ${r.serial} is not CA:TRUE, pathlen:0`);
      if (!/X509v3 Name Constraints: critical/.test(text)) failed.push(`${p.label}: ${r.serial} has no critical name constraints`);
    }
  }
  return failed;
}

export async function runIssuancePaths(): Promise<Section> {
  const name = "issuance-paths";
  if (!ensureTool("wrk", "wrk")) return { name, title: "", summary: "", tables: [], facts: {}, notes: [], skipped: "wrk is not installed" };
  const dir = tempDir("hsmca-bench-paths-");
  let bench: BenchService | undefined;
  const lintWas = lintEnabled();
  try {
    const [leafCsrs, caCsrs] = [await makeCsrs(CSRS), await makeCsrs(CSRS, meshCaNames)];
    bench = await startBenchService({ HSM_CA_LOG_LEVEL: "error", HSM_CA_PROFILES_DIR: benchProfilesDir(dir) }, "postgres");
    if (bench.db.kind !== "postgres") throw new Error("PostgreSQL is not usable: this benchmark compares the paths on PostgreSQL");
    const { service, config } = bench;
    if (!config.vault) throw new Error("the Vault-compatible API is off (HSM_CA_VAULT_API=off)");
    const token = await createApiToken(service.ctx.store.db, { role: "issuer", profiles: [LEAF_PROFILE, CA_PROFILE], description: "bench issuance-paths" });
    const vaultRequests: WrkRequest[] = leafCsrs.map((csr) => ({
      method: "POST",
      path: `/v1/${config.vault!.mount}/sign/${LEAF_PROFILE}`,
      headers: { "x-vault-token": token.secret, "content-type": "application/json" },
      body: Buffer.from(JSON.stringify({ csr, ttl: "1h" })),
    }));
    const caRequests: WrkRequest[] = caCsrs.map((csr) => ({
      method: "POST",
      path: "/api/v1/certificates",
      headers: { authorization: `Bearer ${token.secret}`, "content-type": "application/json" },
      body: Buffer.from(JSON.stringify({ csr, profile: CA_PROFILE, isCA: true })),
    }));
    const rest: IssuancePath = { label: "REST, lint gate on", requests: issuanceRequests(leafCsrs, token.secret), profile: LEAF_PROFILE, ca: false, certificateOf: restCertificate };
    const paths: IssuancePath[] = [
      rest,
      {
        ...rest,
        label: "REST, lint gate off",
        // Process-wide, and the service is in this process: its issuance signs unlinted while this runs.
        around: async (measure) => {
          setLintEnabled(false);
          try {
            return await measure();
          } finally {
            setLintEnabled(lintWas);
          }
        },
      },
      { label: `Vault API /v1/${config.vault.mount}/sign/${LEAF_PROFILE}`, requests: vaultRequests, profile: LEAF_PROFILE, ca: false, certificateOf: vaultCertificate },
      { label: `CA profile ${CA_PROFILE} (REST, isCA)`, requests: caRequests, profile: CA_PROFILE, ca: true, certificateOf: restCertificate },
    ];

    const rootPem = await (await fetch(`${service.httpUrl}/ca/root.pem`)).text();
    const chainPem = await (await fetch(`${service.httpUrl}/ca/chain.pem`)).text();
    const rootFile = path.join(dir, "root.pem");
    const chainFile = path.join(dir, "chain.pem");
    fs.writeFileSync(rootFile, rootPem);
    fs.writeFileSync(chainFile, chainPem);

    const failed: string[] = [];
    // One request of each by hand first: the right status and a certificate in the answer, or wrk would time refusals.
    for (const p of paths) {
      const { status, answer, text } = await (p.around ?? ((m) => m()))(() => post(service.httpsUrl, p.requests[0]!, rootPem));
      if (status < 200 || status > 299 || !p.certificateOf(answer)?.includes("BEGIN CERTIFICATE")) failed.push(`${p.label}: the probe answered HTTP ${status} ${text.slice(0, 300)}`);
    }
    if (failed.length) return { name, title: "Issuance paths vs REST issuance", summary: "", tables: [], facts: {}, notes: [], failed };

    const wrkOptions = (p: IssuancePath, connections: number, durationS: number) => ({ target: service.httpsUrl, requests: p.requests, connections, threads: Math.min(2, connections), durationS, timeoutS: 5 });
    for (const p of paths) await (p.around ?? ((m) => m()))(() => runWrk(wrkOptions(p, 16, WARMUP_S)));

    const runs = new Map<IssuancePath, PathRun[]>(paths.map((p) => [p, []]));
    const samples = new Map<IssuancePath, StoredSample[]>(paths.map((p) => [p, []]));
    for (let round = 1; round <= ROUNDS; round++) {
      for (const p of paths) {
        const before = await storedRows(bench);
        const { wrk, serverCpuMs, machineCpuMs } = await (p.around ?? ((m) => m()))(() => measured(wrkOptions(p, CLIENTS, DURATION_S), ownCpuMs));
        const stored = (await storedRows(bench)) - before;
        runs.get(p)!.push({ wrk, stored, serverCpuMs, machineCpuMs });
        samples.get(p)!.push(...(await newestRows(bench)));
        log(`issuance-paths round ${round} ${p.label}: ${num(wrk.rps)}/s p50 ${num(wrk.p50Ms)} ms p99 ${num(wrk.p99Ms)} ms, ${stored} rows, ${describeErrors(wrk)}`);
        if (wrkErrors(wrk) > 0) failed.push(`${p.label}, round ${round}: ${describeErrors(wrk)}`);
        // wrk counts the answers it read; a request in flight when it stopped may be stored without being counted.
        if (stored < wrk.requests) failed.push(`${p.label}, round ${round}: ${wrk.requests} answers but only ${stored} new rows`);
      }
    }
    for (const p of paths) failed.push(...(await verifySample(p, samples.get(p)!, rootFile, chainFile, dir)));
    const [serials] = await service.ctx.store.db.select({ total: count(), distinct: sql<number>`count(distinct ${certificates.serial})::int` }).from(certificates);
    if (serials!.total !== Number(serials!.distinct)) failed.push(`${serials!.total - Number(serials!.distinct)} repeated serials`);

    const best = (p: IssuancePath) => runs.get(p)!.reduce((a, b) => (b.wrk.rps > a.wrk.rps ? b : a));
    const restBest = best(rest).wrk.rps;
    const lintOff = paths[1]!;
    const targetOf = (p: IssuancePath): string => {
      if (p === rest) return "reference";
      // The gate's cost: REST with the gate on against the same without it.
      if (p === lintOff) return `gate on ≥ ${TARGET}× off: ${restBest >= TARGET * best(p).wrk.rps ? "met" : "missed"} (${ratio(restBest, best(p).wrk.rps)})`;
      return `≥ ${TARGET}× REST: ${best(p).wrk.rps >= TARGET * restBest ? "met" : "missed"}`;
    };
    const rounds = Array.from({ length: ROUNDS }, (_, i) => `round ${i + 1}`);
    return {
      name,
      title: "Issuance paths vs REST issuance (PostgreSQL)",
      summary: `One in-process service on PostgreSQL, one issuer token allowed tls-server and ${CA_PROFILE}; wrk over HTTPS with
keep-alive at ${CLIENTS} connections, ${DURATION_S} s per path and round after a ${WARMUP_S} s warm-up of each, the paths taking turns in
${ROUNDS} round(s) (the best round of each counts). The paths: REST \`POST /api/v1/certificates\` for a 1-hour tls-server certificate
with the lint gate on (the default, and the reference); the same with the gate off (\`setLintEnabled(false)\`, process-wide,
restored after: what lint before sign costs); the Vault-compatible API \`POST /v1/${config.vault.mount}/sign/tls-server\` (\`X-Vault-Token\`,
\`{csr, ttl: "1h"}\`, the same ${CSRS} CSRs); and sub-CA certificates from a CA profile through REST (\`isCA: true\`), profile
${CA_PROFILE}: the shipped mesh-intermediate with \`approvals: { required: 0 }\`, written by the bench into a temp profiles
directory, for ${CSRS} distinct P-256 CSRs named inside its constraints (CN \`Mesh CA bench-<i>\`, DNS
\`identity-<i>.linkerd.cluster.local\`, URI \`spiffe://cluster.local\`). "Server CPU ms/cert" is the service process's CPU
time and PostgreSQL's server processes' per certificate answered, in the best round.`,
      tables: [
        {
          headers: ["path", "certificates/s (best)", ...rounds, "vs REST", "p50 ms", "p99 ms", "server CPU ms/cert", "target"],
          rows: paths.map((p) => {
            const b = best(p);
            return [p.label, num(b.wrk.rps), ...runs.get(p)!.map((r) => num(r.wrk.rps)), ratio(b.wrk.rps, restBest), num(b.wrk.p50Ms), num(b.wrk.p99Ms), num(b.serverCpuMs), targetOf(p)];
          }),
        },
      ],
      facts: { database: bench.db.version, clients: String(CLIENTS), "wrk threads": String(Math.min(2, CLIENTS)) },
      notes: [
        `Every answer was a 2xx and every answered certificate is in the database (${paths.map((p) => `${p.label}: ${runs.get(p)!.map((r) => `${r.stored} rows for ${r.wrk.requests} answers`).join(", ")}`).join("; ")}); the ${SAMPLE} newest of each run pass \`openssl verify\` against the root and chain from /ca/root.pem and /ca/chain.pem (\`-purpose sslserver\` for tls-server, \`-purpose any\` for the sub-CAs, which are also checked for CA:TRUE, pathlen:0 and critical name constraints); no serial repeats.`,
      ],
      failed: failed.length ? failed : undefined,
    };
  } finally {
    setLintEnabled(lintWas);
    await bench?.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
