import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { count, like } from "drizzle-orm";
import { PostgresJsPreparedQuery } from "drizzle-orm/postgres-js/session";
import { createApiToken } from "../../src/auth/api-tokens.ts";
import { certificates } from "../../src/store/schema.ts";
import type { RunResult } from "./acme-load-client.ts";
import { postgresCpu, postgresCpuSince, processCpuMs } from "./cpu.ts";
import { Background, ensureTool, freePort, nodeTsArgs, run, tempDir, waitForPort } from "./proc.ts";
import { log, num, ratio, REPO, seconds, toolVersion, type Section } from "./report.ts";
import { startBenchService, type BenchService } from "./service.ts";
import { profileWhile } from "./cpu-layers.ts";
import { buildStepCa, startStepCa } from "./step-ca.ts";

/**
 * Complete ACME orders per second (RFC 8555, http-01 on loopback), against
 * the REST issuance rate of the same service for the same kind of CSR at the
 * same concurrency: an ACME order is an issuance plus protocol overhead.
 */

const DURATION_S = Number(process.env.BENCH_ACME_SECONDS ?? 10);
const WARMUP_S = Number(process.env.BENCH_ACME_WARMUP_SECONDS ?? 3);
const CONCURRENCY = (process.env.BENCH_ACME_CONCURRENCY ?? "1,8,32").split(",").map(Number);
/** The peer: BENCH_ACME_SERVERS=hsm-ca leaves step-ca out. */
const SERVERS = new Set((process.env.BENCH_ACME_SERVERS ?? "hsm-ca,step-ca").split(","));
/**
 * ACME accounts the loops take in turn. Default: one per loop at the highest concurrency, as a fleet of
 * clients would have: step-ca 0.19 fails and stalls orders of loops that share an account (its
 * compare-and-swap order list; 72-84 failed orders and runs stretched to 36 s at 32 loops on 8 accounts).
 */
const ACCOUNTS = Number(process.env.BENCH_ACME_ACCOUNTS ?? Math.max(...CONCURRENCY));
const POLL_MS = Number(process.env.BENCH_ACME_POLL_MS ?? 20);
/** Certificates checked with openssl verify. */
const OPENSSL_SAMPLE = 10;
/** The profile's order limits, raised so that a run of a few thousand orders never meets them (they are still counted). */
const BENCH_ORDER_LIMIT = 1_000_000;

/** The load client's process, spoken to over IPC. */
class LoadClient {
  private next = 1;
  private readonly waiting = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  private constructor(
    readonly child: ChildProcess,
    readonly http01Port: number,
  ) {
    child.on("message", (m: any) => {
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      if (m.ok) w.resolve(m.result);
      else w.reject(new Error(`load client: ${m.error}`));
    });
    child.on("exit", (code, signal) => {
      for (const w of this.waiting.values()) w.reject(new Error(`the load client exited (${signal ?? code})`));
      this.waiting.clear();
    });
  }

  static start(env: Record<string, string> = {}): Promise<LoadClient> {
    const child = spawn(process.execPath, nodeTsArgs("scripts/bench/acme-load-client.ts"), {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      env: { ...process.env, BENCH_ACME_POLL_MS: String(POLL_MS), ...env },
    });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("the load client did not start within 30 s")), 30_000);
      child.once("exit", (code) => reject(new Error(`the load client exited (${code}) before starting`)));
      child.once("message", (m: any) => {
        clearTimeout(timer);
        if (m?.ready) resolve(new LoadClient(child, m.http01Port));
        else reject(new Error(m?.error ?? `the load client said ${JSON.stringify(m)}`));
      });
    });
  }

  call<T>(cmd: string, args: object = {}): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.child.send({ id, cmd, ...args });
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise<void>((r) => this.child.once("exit", () => r()));
    if (this.child.connected) this.child.send({ cmd: "exit" });
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5_000);
    await gone;
    clearTimeout(timer);
  }
}

/**
 * Statements the service sends to PostgreSQL, counted by wrapping drizzle's
 * postgres-js prepared query (the service runs in this process); the bench's
 * own figure, src/ is not touched.
 */
let databaseQueries = 0;
function countDatabaseQueries(): void {
  const proto = PostgresJsPreparedQuery.prototype as unknown as { execute: (...args: unknown[]) => Promise<unknown> };
  const execute = proto.execute;
  proto.execute = function (this: unknown, ...args: unknown[]) {
    databaseQueries++;
    return execute.apply(this, args);
  };
}

interface Measured extends RunResult {
  /** Statements sent to PostgreSQL per completed order or issuance (undefined on PGlite). */
  queriesPerOrder?: number;
  /** CPU ms per completed order or issuance: this process (the service), PostgreSQL, the load client. */
  serviceCpuPerOrder: number;
  postgresCpuPerOrder?: number;
  clientCpuPerOrder: number;
}


/** pebble-challtestsrv as the tests use it: every A query answers 127.0.0.1. */
async function startDns(): Promise<{ server: Background; address: string }> {
  const dnsPort = await freePort();
  const mgmtPort = await freePort();
  const server = Background.start("pebble-challtestsrv", "pebble-challtestsrv", [
    "-dns01", `127.0.0.1:${dnsPort}`, "-http01", "", "-https01", "", "-tlsalpn01", "",
    "-management", `127.0.0.1:${mgmtPort}`, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
  ]);
  await waitForPort(mgmtPort);
  await waitForPort(dnsPort); // its TCP listener; UDP opens alongside
  return { server, address: `127.0.0.1:${dnsPort}` };
}

/** profiles/acme/default.yaml with its order limits raised (and nothing else changed). */
function benchProfilesDir(): string {
  const dir = tempDir("hsmca-bench-acme-profiles-");
  const text = fs.readFileSync(path.join(REPO, "profiles/acme/default.yaml"), "utf8");
  let replaced = 0;
  const out = text.replace(/^(\s*(?:newOrdersPerAccount|ordersPerIdentifier):\s*\{\s*count:\s*)\d+/gm, (_, head: string) => {
    replaced++;
    return `${head}${BENCH_ORDER_LIMIT}`;
  });
  if (replaced !== 2) throw new Error("profiles/acme/default.yaml: could not find its two rateLimits counts to raise");
  fs.writeFileSync(path.join(dir, "default.yaml"), out);
  return dir;
}

interface PeerRun extends RunResult {
  /** CPU ms per completed order of step-ca's process (its badger database is inside it; failed orders' work included). */
  serverCpuPerOrder: number;
  clientCpuPerOrder: number;
}

/**
 * step-ca's ACME (scripts/bench/step-ca.ts) with the same load client and
 * the same kind of order, at the same concurrencies. step-ca 0.19 fetches
 * http-01 on port 80 only, so the load client's responder listens there
 * (root, or a low ip_unprivileged_port_start); names resolve through the
 * same pebble-challtestsrv (step-ca --resolver).
 */
async function stepCaAcme(dnsAddress: string, work: string): Promise<{ runs: PeerRun[]; version: string; failed: string[]; notes: string[] } | string> {
  const build = await buildStepCa();
  if (typeof build === "string") return build;
  let client: LoadClient;
  try {
    client = await LoadClient.start({ BENCH_ACME_HTTP01_PORT: "80" });
  } catch (err) {
    return `step-ca validates http-01 on port 80 only, and the load client could not listen there (${(err as Error).message})`;
  }
  const ca = await startStepCa(build, path.join(work, "step-ca"), { resolver: dnsAddress }).catch(async (err: Error) => {
    await client.stop();
    throw err;
  });
  const failed: string[] = [];
  const peerErrors: string[] = [];
  try {
    await client.call("setup", { httpsUrl: ca.url, rootPem: ca.rootPem, token: "", accounts: ACCOUNTS, directoryPath: ca.acmeDirectoryPath });
    const exec = async (concurrency: number, secs: number, warm = false): Promise<PeerRun> => {
      log(`ACME: step-ca ${warm ? "warm-up " : ""}ACME orders, ${concurrency} concurrent, ${secs} s`);
      const cpu0 = processCpuMs(ca.pid);
      const r = await client.call<RunResult>("run", { mode: "acme", concurrency, seconds: secs });
      const n = r.completed || NaN;
      const m: PeerRun = { ...r, serverCpuPerOrder: (processCpuMs(ca.pid) - cpu0) / n, clientCpuPerOrder: r.clientCpuMs / n };
      log(
        `ACME:   step-ca ${r.completed} in ${r.seconds.toFixed(1)} s = ${num(r.perSecond)}/s, p50 ${num(r.p50Ms)} ms, p99 ${num(r.p99Ms)} ms, ${num(r.requestsPerOrder)} requests/order; CPU ms each: step-ca ${num(m.serverCpuPerOrder)}, client ${num(m.clientCpuPerOrder)}` +
          (r.errors ? `; ${r.errors} errors: ${r.errorSamples.join(" | ")}` : ""),
      );
      // The peer's own failures are a figure of the peer (reported with the cause its log gives), not a failed check of the bench.
      if (r.errors) {
        // Its log's error field is mostly the public detail; a more specific one is worth quoting.
        const cause = ca.serverErrors().filter((e) => !e.startsWith("The server experienced an internal error")).slice(-1)[0];
        peerErrors.push(`${r.errors} at ${concurrency} loops (${r.errorSamples[0]?.split(" {")[0] ?? "?"}${cause ? `; step-ca's log: ${cause.slice(0, 240)}` : ""})`);
      }
      if (r.completed === 0) failed.push(`step-ca ACME at ${concurrency} concurrent completed nothing`);
      return m;
    };
    await exec(8, WARMUP_S, true);
    const runs: PeerRun[] = [];
    for (const c of CONCURRENCY) runs.push(await exec(c, DURATION_S));
    // The same checks as hsm-ca's chains: openssl verify against step-ca's root and intermediate, the order's name in the SAN.
    const { samples, ordersCompleted } = await client.call<{ samples: Array<{ name: string; pem: string }>; ordersCompleted: number }>("samples", { n: OPENSSL_SAMPLE });
    const rootFile = path.join(work, "step-root.pem");
    const chainFile = path.join(work, "step-intermediate.pem");
    fs.writeFileSync(rootFile, ca.rootPem);
    fs.writeFileSync(chainFile, ca.intermediatePem);
    let verified = 0;
    for (const [i, s] of samples.entries()) {
      const [leaf] = s.pem.split(/(?=-----BEGIN CERTIFICATE-----)/);
      const file = path.join(work, `step-leaf-${i}.pem`);
      fs.writeFileSync(file, leaf!);
      const v = await run("openssl", ["verify", "-CAfile", rootFile, "-untrusted", chainFile, "-purpose", "sslserver", file], { check: false, timeoutMs: 20_000 });
      const names = await run("openssl", ["x509", "-in", file, "-noout", "-ext", "subjectAltName"], { check: false, timeoutMs: 20_000 });
      if (v.code !== 0 || !v.stdout.includes(": OK")) failed.push(`step-ca: openssl verify of the certificate for ${s.name}: ${v.stdout}${v.stderr}`);
      else if (!names.stdout.includes(`DNS:${s.name}`)) failed.push(`step-ca: the certificate for ${s.name} does not name it: ${names.stdout}`);
      else verified++;
    }
    if (samples.length < OPENSSL_SAMPLE) failed.push(`step-ca: only ${samples.length} certificates to verify`);
    return {
      runs,
      version: build.version,
      failed,
      notes: [
        `step-ca (ACME provisioner, badger database): ${ordersCompleted} orders completed over its runs (warm-up included)${peerErrors.length ? " (its failed orders below)" : " without error"}; ${verified} chains spread over them verified with \`openssl verify -purpose sslserver\` against its root and intermediate, each naming its order's identifier. Its http-01 validator fetched from port 80 (step-ca 0.19 has no other), resolving names through the same pebble-challtestsrv.`,
        ...(peerErrors.length
          ? [`step-ca failed orders (HTTP 500 serverInternal; counted, not retried, not in its rate): ${peerErrors.join("; ")}. Its log names no cause; the likely one: its ACME store writes orders, authorizations and an account's order list with compare-and-swap, and every newOrder re-reads and updates each pending order of the account (acme/db/nosql/order.go, updateAddOrderIDs), so loops sharing an account (${ACCOUNTS} accounts here) collide.`]
          : []),
      ],
    };
  } catch (err) {
    failed.push(`step-ca ACME: ${(err as Error).message.slice(0, 600)}; its log: ${ca.output().slice(-600)}`);
    return { runs: [], version: build.version, failed, notes: [] };
  } finally {
    await client.stop().catch(() => {});
    await ca.stop();
  }
}

export async function runAcme(): Promise<Section> {
  const section: Section = {
    name: "acme",
    title: "ACME orders with http-01",
    summary: `Complete ACME orders per second against the service's default directory (\`/acme/directory\`), each order one DNS
identifier never ordered before (\`*.bench.example.test\`, resolved to 127.0.0.1 by pebble-challtestsrv as in the tests):
newOrder, fetch the authorization, serve the key authorization from a node:http server on the http-01 port, POST the
challenge, poll the authorization every ${POLL_MS} ms until valid, finalize with a fresh P-256 CSR, POST-as-GET the order,
download the chain. Clients are the tests' JWS client (\`test/helpers/acme-client.ts\`, ES256 account keys), ${ACCOUNTS}
accounts shared round-robin by ${CONCURRENCY.join(", ")} concurrent order loops, each loop with its own keep-alive connection and nonce;
${DURATION_S} s per run after a ${WARMUP_S} s warm-up of each kind. The ceiling is the REST issuance rate of the same service, at the
same concurrency, for the same CSR (fresh P-256 key, CN and one DNS SAN, profile \`tls-server\`): \`POST /api/v1/certificates\`
with an admin token over keep-alive HTTPS. Load client and http-01 server run in one process of their own, the service in
another; they, PostgreSQL and the DNS server share the machine's cores. CPU time per order is each process's own (PostgreSQL:
all its server processes on the machine, so other users of that server count too); statements are counted in the service's
drizzle/postgres-js layer. Settings for the bench service:
\`HSM_CA_ACME_RATE_LIMIT_PER_ACCOUNT=off\` (the default 20/s per account throttles 4 loops sharing an account) and the
directory's \`newOrdersPerAccount\`/\`ordersPerIdentifier\` limits raised from 300 and 100 an hour to ${num(BENCH_ORDER_LIMIT)} (they are
still counted on every newOrder); nonces needed nothing (one per response, kept per loop). The server's Retry-After (1 s)
is not honoured while polling: that would measure the client's sleep, not the server. The background OCSP pre-signing is
paused for the whole run (it signs each new certificate a little later whichever way it was issued, and would do the REST
runs' backlog during the ACME runs after them). The peer is step-ca (built from Debian's source package by the bench,
software P-256 intermediate, badger database, an ACME provisioner) with the same client, accounts and kind of order at the same
concurrencies, after hsm-ca's runs; its http-01 validator fetches from port 80 only, so the client's responder listens there.`,
    tables: [],
    facts: {},
    notes: [],
  };
  if (!ensureTool("pebble-challtestsrv", "pebble")) {
    section.skipped = "pebble-challtestsrv is not installed (Debian package `pebble`): nothing resolves the orders' names";
    return section;
  }
  if (!ensureTool("openssl", "openssl")) {
    section.skipped = "openssl is not installed";
    return section;
  }

  const dns = await startDns();
  const profilesDir = benchProfilesDir();
  const work = tempDir("hsmca-bench-acme-");
  let client: LoadClient | undefined;
  let bench: BenchService | undefined;
  try {
    client = await LoadClient.start();
    bench = await startBenchService({
      HSM_CA_ACME_PROFILES_DIR: profilesDir,
      HSM_CA_ACME_HTTP01_PORT: String(client.http01Port),
      HSM_CA_ACME_TLSALPN01_PORT: String(await freePort()),
      HSM_CA_ACME_RESOLVERS: dns.address,
      HSM_CA_ACME_RATE_LIMIT_PER_ACCOUNT: "off",
    });
    section.facts.database = bench.db.version;
    section.facts["ACME accounts"] = String(ACCOUNTS);
    section.facts["authorization poll interval"] = `${POLL_MS} ms`;
    section.facts["DNS server"] = `pebble-challtestsrv ${toolVersion("dpkg-query", ["-W", "-f=${Version}", "pebble"])}`;
    log(`ACME: service up on ${bench.db.kind === "postgres" ? "PostgreSQL" : "PGlite"} (${bench.db.version})`);
    const { service } = bench;
    await bench.service.revocation.ocsp.stop(); // resolves once a batch in flight has stopped
    const issuer = service.ctx.issuer();
    const token = await createApiToken(service.ctx.store.db, { role: "admin", description: "bench acme ceiling" });
    await client.call("setup", { httpsUrl: service.httpsUrl, rootPem: issuer.rootPem, token: token.secret, accounts: ACCOUNTS });

    const pgVisible = bench.db.kind === "postgres" && postgresCpu().size > 0;
    if (bench.db.kind === "postgres") countDatabaseQueries();
    const exec = async (mode: "acme" | "rest", concurrency: number, secs: number, warm = false): Promise<Measured> => {
      log(`ACME: ${warm ? "warm-up " : ""}${mode === "acme" ? "ACME orders" : "REST issuance"}, ${concurrency} concurrent, ${secs} s`);
      const pg0 = postgresCpu();
      const q0 = databaseQueries;
      const cpu0 = process.cpuUsage();
      const r = await client!.call<RunResult>("run", { mode, concurrency, seconds: secs });
      const cpu = process.cpuUsage(cpu0);
      const pgMs = pgVisible ? postgresCpuSince(pg0) : undefined;
      const n = r.completed || NaN;
      const m: Measured = {
        ...r,
        queriesPerOrder: bench!.db.kind === "postgres" ? (databaseQueries - q0) / n : undefined,
        serviceCpuPerOrder: (cpu.user + cpu.system) / 1000 / n,
        postgresCpuPerOrder: pgMs === undefined ? undefined : pgMs / n,
        clientCpuPerOrder: r.clientCpuMs / n,
      };
      log(
        `ACME:   ${r.completed} in ${r.seconds.toFixed(1)} s = ${num(r.perSecond)}/s, p50 ${num(r.p50Ms)} ms, p99 ${num(r.p99Ms)} ms` +
          (mode === "acme" ? `, ${num(r.requestsPerOrder)} requests/order` : "") +
          (m.queriesPerOrder === undefined ? "" : `, ${num(m.queriesPerOrder)} database statements each`) +
          `; CPU ms each: service ${num(m.serviceCpuPerOrder)}, PostgreSQL ${m.postgresCpuPerOrder === undefined ? "n/a" : num(m.postgresCpuPerOrder)}, client ${num(m.clientCpuPerOrder)}` +
          (r.finalizeRetries ? `; ${r.finalizeRetries} finalize answered orderNotReady after a valid authorization` : "") +
          (r.errors ? `; ${r.errors} errors: ${r.errorSamples.join(" | ")}` : ""),
      );
      log(`ACME:   mean ms per request: ${Object.entries(r.stepMs).map(([k, v]) => `${k} ${num(v)}`).join(", ")}`);
      return m;
    };
    const all: Measured[] = [];
    all.push(await exec("rest", 8, WARMUP_S, true));
    all.push(await exec("acme", 8, WARMUP_S, true));
    const rows: Array<{ acme: Measured; rest: Measured }> = [];
    for (const c of CONCURRENCY) {
      // Interleaved, so that each ratio compares runs that were seconds apart.
      const rest = await exec("rest", c, DURATION_S);
      const acme = await exec("acme", c, DURATION_S);
      all.push(rest, acme);
      rows.push({ acme, rest });
    }
    // Where an order's service CPU goes, by layer: one more run at the highest concurrency under the profiler
    // (it slows the service; its rate is not one of the figures above).
    const top = Math.max(...CONCURRENCY);
    const profiled = await profileWhile(() => exec("acme", top, DURATION_S));
    all.push(profiled.result);

    // Checks: no errors, a sample verifies with openssl, the database holds every ACME certificate.
    const failed: string[] = [];
    for (const r of all) {
      if (r.errors) failed.push(`${r.mode} at ${r.concurrency} concurrent: ${r.errors} failed ${r.mode === "acme" ? "orders" : "issuances"}: ${r.errorSamples.join(" | ")}`);
      if (r.completed === 0) failed.push(`${r.mode} at ${r.concurrency} concurrent completed nothing`);
      if (r.badNonceRetries) failed.push(`${r.mode} at ${r.concurrency} concurrent: ${r.badNonceRetries} badNonce answers to fresh nonces`);
    }
    const { samples, ordersCompleted } = await client.call<{ samples: Array<{ name: string; pem: string }>; ordersCompleted: number }>("samples", { n: OPENSSL_SAMPLE });
    const rootFile = path.join(work, "root.pem");
    const chainFile = path.join(work, "chain.pem");
    fs.writeFileSync(rootFile, issuer.rootPem);
    fs.writeFileSync(chainFile, issuer.chainPem);
    const normalize = (pem: string) => pem.replace(/\s+/g, "");
    let verified = 0;
    for (const [i, s] of samples.entries()) {
      const [leaf, ...rest] = s.pem.split(/(?=-----BEGIN CERTIFICATE-----)/);
      const file = path.join(work, `leaf-${i}.pem`);
      fs.writeFileSync(file, leaf!);
      if (normalize(rest.join("")) !== normalize(issuer.chainPem)) {
        failed.push(`order for ${s.name}: the downloaded chain is not the issuer's certificate`);
        continue;
      }
      const v = await run("openssl", ["verify", "-CAfile", rootFile, "-untrusted", chainFile, "-purpose", "sslserver", file], { check: false, timeoutMs: 20_000 });
      const names = await run("openssl", ["x509", "-in", file, "-noout", "-ext", "subjectAltName"], { check: false, timeoutMs: 20_000 });
      if (v.code !== 0 || !v.stdout.includes(": OK")) failed.push(`openssl verify of the certificate for ${s.name}: ${v.stdout}${v.stderr}`);
      else if (!names.stdout.includes(`DNS:${s.name}`)) failed.push(`the certificate for ${s.name} does not name it: ${names.stdout}`);
      else verified++;
    }
    const [stored] = await service.ctx.store.db.select({ n: count() }).from(certificates).where(like(certificates.requestedBy, "acme:%"));
    const storedAcme = stored!.n;
    if (storedAcme < ordersCompleted) failed.push(`the database holds ${storedAcme} ACME certificates for ${ordersCompleted} completed orders`);
    if (samples.length < OPENSSL_SAMPLE) failed.push(`only ${samples.length} certificates to verify`);

    // The peer, after hsm-ca's runs (its service idles meanwhile, OCSP paused): step-ca with the same client and orders.
    let peer: Awaited<ReturnType<typeof stepCaAcme>> | undefined;
    if (SERVERS.has("step-ca")) {
      await client.stop();
      peer = await stepCaAcme(dns.address, work).catch((err: Error) => `step-ca did not run: ${err.message.slice(0, 400)}`);
      if (typeof peer === "string") {
        log(`ACME: step-ca skipped: ${peer}`);
        section.notes.push(`step-ca skipped: ${peer}.`);
      } else {
        failed.push(...peer.failed);
        section.notes.push(...peer.notes);
        section.facts["step-ca"] = peer.version;
      }
    }
    if (failed.length) section.failed = failed;
    else {
      section.notes.push(
        `Every order and issuance of every run (warm-ups included) completed without error and without a badNonce; ${verified} ACME chains spread over all runs verified with \`openssl verify -purpose sslserver\` against the root and the issuer's certificate (which is also what each download carried after the leaf), each naming its order's identifier; the database holds ${storedAcme} certificates requested by ACME accounts for ${ordersCompleted} completed orders.`,
      );
    }

    section.tables.push({
      caption: "Orders (ACME) and issuances (REST, the ceiling) per second, and their latency, by concurrent loops:",
      headers: ["concurrent", "ACME orders/s", "REST issuances/s", "ACME/REST", "ACME p50", "REST p50", "p50 ACME/REST", "ACME p99", "REST p99", "p99 ACME/REST"],
      rows: rows.map(({ acme, rest }) => [
        acme.concurrency,
        num(acme.perSecond),
        num(rest.perSecond),
        ratio(acme.perSecond, rest.perSecond),
        seconds(acme.p50Ms),
        seconds(rest.p50Ms),
        ratio(acme.p50Ms, rest.p50Ms),
        seconds(acme.p99Ms),
        seconds(rest.p99Ms),
        ratio(acme.p99Ms, rest.p99Ms),
      ]),
    });
    section.tables.push({
      caption:
        "HTTP requests and database statements per completed order (REST: 1 request per issuance, so that ratio is the count); statements the service sent through drizzle, background jobs included:",
      headers: ["concurrent", "ACME orders", "requests/order", "vs REST", "pending authz polls/order", "validator GETs/order", "DB statements/order", "REST: per issuance", "ACME/REST", "REST issuances"],
      rows: rows.map(({ acme, rest }) => [
        acme.concurrency,
        acme.completed,
        num(acme.requestsPerOrder),
        ratio(acme.requestsPerOrder, rest.requestsPerOrder),
        num(acme.pendingPollsPerOrder),
        num(acme.validatorGetsPerOrder),
        acme.queriesPerOrder === undefined ? "n/a" : num(acme.queriesPerOrder),
        rest.queriesPerOrder === undefined ? "n/a" : num(rest.queriesPerOrder),
        ratio(acme.queriesPerOrder, rest.queriesPerOrder),
        rest.completed,
      ]),
    });
    const cpu = (v: number | undefined) => (v === undefined ? "n/a" : `${num(v)} ms`);
    section.tables.push({
      caption:
        "CPU time per completed order or issuance: the service's process, the PostgreSQL server's processes (all of them), and the load client's process (CSRs, JWS, http-01 server):",
      headers: ["concurrent", "service ACME", "service REST", "ACME/REST", "PostgreSQL ACME", "PostgreSQL REST", "ACME/REST", "client ACME", "client REST", "ACME/REST"],
      rows: rows.map(({ acme, rest }) => [
        acme.concurrency,
        cpu(acme.serviceCpuPerOrder),
        cpu(rest.serviceCpuPerOrder),
        ratio(acme.serviceCpuPerOrder, rest.serviceCpuPerOrder),
        cpu(acme.postgresCpuPerOrder),
        cpu(rest.postgresCpuPerOrder),
        ratio(acme.postgresCpuPerOrder, rest.postgresCpuPerOrder),
        cpu(acme.clientCpuPerOrder),
        cpu(rest.clientCpuPerOrder),
        ratio(acme.clientCpuPerOrder, rest.clientCpuPerOrder),
      ]),
    });
    const STEPS = ["newOrder", "authorization", "challenge", "authorization poll", "validation", "finalize", "order poll", "certificate"];
    const stepCell = (r: Measured, rest: Measured, k: string) => (r.stepMs[k] === undefined ? "-" : `${seconds(r.stepMs[k]!)} (${ratio(r.stepMs[k], rest.stepMs.issue)})`);
    const perOrder = (ms: number) => ms / Math.max(1, profiled.result.completed);
    section.tables.push({
      caption: `Where an order's service CPU goes: the service's main thread under node:inspector's profiler during one more run of ${top} loops (${num(profiled.result.perSecond)} orders/s while profiled), each sample charged to its nearest frame outside Node's own JavaScript (scripts/bench/cpu-layers.ts). Main thread busy ${num(perOrder(profiled.busyMs))} ms per order; PKCS#11 signing threads, libuv's pool and PostgreSQL are not in it. On a saturated 2-core machine a sample also lands on a frame while its thread waits for a core (a socket write that woke PostgreSQL, say), so the shares say where the event loop's time goes, not only its own CPU.`,
      headers: ["layer", "main-thread ms per order", "share"],
      rows: profiled.layers.slice(0, 14).map((l) => [l.layer, num(perOrder(l.ms)), `${(l.share * 100).toFixed(1)}%`]),
    });
    section.tables.push({
      caption:
        'Mean time of each ACME request as the client sees it, with its ratio to a whole REST issuance request at the same concurrency ("validation": from the challenge POST to the authorization\'s first "valid", polls included):',
      headers: ["concurrent", "REST issuance", ...STEPS],
      rows: rows.map(({ acme, rest }) => [acme.concurrency, seconds(rest.stepMs.issue ?? NaN), ...STEPS.map((k) => stepCell(acme, rest, k))]),
    });
    if (peer && typeof peer !== "string" && peer.runs.length) {
      const stepRuns = peer.runs;
      const cpu2 = (v: number | undefined) => (v === undefined ? "n/a" : `${num(v)} ms`);
      section.tables.push({
        caption:
          "hsm-ca's ACME against step-ca's (same client, same orders, same concurrency; step-ca ran after hsm-ca's runs). Server CPU per order: hsm-ca's process with PostgreSQL's, step-ca's process (badger is inside it):",
        headers: ["concurrent", "hsm-ca orders/s", "step-ca orders/s", "hsm-ca/step-ca", "step-ca failed orders", "hsm-ca p50", "step-ca p50", "hsm-ca p99", "step-ca p99", "requests/order hsm-ca", "step-ca", "server CPU/order hsm-ca", "step-ca", "DB statements/order hsm-ca"],
        rows: rows.map(({ acme }) => {
          const st = stepRuns.find((r) => r.concurrency === acme.concurrency);
          return [
            acme.concurrency,
            num(acme.perSecond),
            st ? num(st.perSecond) : "n/a",
            ratio(acme.perSecond, st?.perSecond),
            st ? st.errors : "n/a",
            seconds(acme.p50Ms),
            st ? seconds(st.p50Ms) : "n/a",
            seconds(acme.p99Ms),
            st ? seconds(st.p99Ms) : "n/a",
            num(acme.requestsPerOrder),
            st ? num(st.requestsPerOrder) : "n/a",
            cpu2(acme.serviceCpuPerOrder + (acme.postgresCpuPerOrder ?? 0)),
            cpu2(st?.serverCpuPerOrder),
            acme.queriesPerOrder === undefined ? "n/a" : num(acme.queriesPerOrder),
          ];
        }),
      });
      const at32 = rows.find((r) => r.acme.concurrency === 32)?.acme;
      const st32 = stepRuns.find((r) => r.concurrency === 32);
      if (at32 && st32) {
        section.notes.push(
          `Target ≥ 1.0× step-ca's ACME at 32 loops: ${at32.perSecond >= st32.perSecond ? "met" : "missed"} (${ratio(at32.perSecond, st32.perSecond)}: ${num(at32.perSecond)} vs ${num(st32.perSecond)} orders/s); database statements per order ≤ 20: ${at32.queriesPerOrder === undefined ? "not counted (PGlite)" : `${at32.queriesPerOrder <= 20 ? "met" : "missed"} (${num(at32.queriesPerOrder)})`}.`,
        );
      }
    }
    const raced = all.reduce((a, r) => a + (r.mode === "acme" ? r.finalizeRetries : 0), 0);
    if (raced) {
      // The validation's writes are one transaction holding the order's lock (src/acme/validation-runner.ts): this must not happen.
      (section.failed ??= []).push(
        `${raced} of ${ordersCompleted} orders answered finalize with orderNotReady right after their authorization read valid`,
      );
    } else {
      section.notes.push(`No order answered finalize with \`orderNotReady\` after its authorization read \`valid\` (the client finalizes at once).`);
    }
    const best = rows.reduce((a, b) => (b.acme.perSecond > a.acme.perSecond ? b : a));
    section.notes.push(
      `Best ACME rate ${num(best.acme.perSecond)} orders/s at ${best.acme.concurrency} concurrent loops, ${ratio(best.acme.perSecond, best.rest.perSecond)} of REST issuance at the same concurrency. Requests per order are 7 without a pending poll (newOrder, authz, challenge, authz poll, finalize, order, certificate).`,
    );
    return section;
  } finally {
    await client?.stop().catch(() => {});
    await bench?.cleanup().catch((e: Error) => log(`ACME: cleanup: ${e.message}`));
    await dns.server.stop();
    fs.rmSync(profilesDir, { recursive: true, force: true });
    fs.rmSync(work, { recursive: true, force: true });
  }
}
