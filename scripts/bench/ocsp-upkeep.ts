import path from "node:path";
import postgres from "postgres";
import { postgresCpu, postgresCpuSince } from "./cpu.ts";
import { ensureTool, freePort, run, sleep } from "./proc.ts";
import { makeCsrs, issuanceRequests } from "./issuance.ts";
import { log, num, REPO, type Section } from "./report.ts";
import { startWorkersService, type WorkersService } from "./service.ts";
import { describeErrors, runWrk } from "./wrk.ts";

/**
 * What OCSP upkeep costs next to issuance, and what the service costs at
 * rest with many certificates stored: `hsm-ca serve` with 2 workers on
 * PostgreSQL, a REST burst at 16 clients, then the CPU the service and
 * PostgreSQL spend until every new certificate has its pre-signed response;
 * then the resting CPU with 100k and 1M certificates stored (rows inserted
 * with SQL, responses not due).
 */

const WORKERS = 2;
const BURST_S = Number(process.env.BENCH_UPKEEP_BURST_SECONDS ?? 20);
const REST_S = Number(process.env.BENCH_UPKEEP_REST_SECONDS ?? 30);
const CLIENTS = 16;
const STORED = (process.env.BENCH_UPKEEP_STORED ?? "100000,1000000").split(",").map(Number);
/** "Quiet again": nothing pending, checked at this interval. */
const POLL_MS = 250;

export async function runOcspUpkeep(): Promise<Section> {
  const section: Section = {
    name: "ocsp-upkeep",
    title: "OCSP upkeep next to issuance, and the service at rest",
    summary: `\`hsm-ca serve\` with ${WORKERS} workers (node:cluster) on PostgreSQL. A ${BURST_S} s REST burst at ${CLIENTS} clients (wrk,
P-256 CSRs, 1-hour tls-server certificates); CPU of the service's processes and of every PostgreSQL process during the burst,
and then from the burst's end until no certificate is left without its pre-signed OCSP response (\`certificates.ocsp_pending\`
empty), both per certificate issued. Then the resting CPU (service + PostgreSQL, ${REST_S} s, nothing asked) with
${STORED.map((n) => num(n)).join(" and ")} certificates stored (rows inserted with SQL, with stored responses not yet due).`,
    tables: [],
    facts: {},
    notes: [],
    failed: [],
  };
  if (!ensureTool("wrk", "wrk")) {
    section.skipped = "wrk is not installed (Debian package `wrk`)";
    return section;
  }
  const w = await startWorkersService(WORKERS, await freePort(), await freePort());
  const sql = postgres(w.db.url!, { max: 2, onnotice: () => {} });
  try {
    section.facts.database = w.db.version;
    const token = await run(process.execPath, [path.join(REPO, "scripts/hsm-ca.mjs"), "token", "create", "--role", "issuer", "--profile", "tls-server"], {
      env: { ...process.env, ...w.env },
      check: true,
    });
    const secret = token.stdout.trim().split("\n").pop()!.trim();
    const requests = issuanceRequests(await makeCsrs(500), secret);
    const pending = async () => Number((await sql`select count(*)::int as n from certificates where ocsp_pending`)[0]!.n);
    const issued = async () => Number((await sql`select count(*)::int as n from certificates where profile = 'tls-server'`)[0]!.n);
    await until(async () => (await pending()) === 0, 60_000);

    // The burst.
    const before = await issued();
    const cpu0 = cpuNow(w);
    const wrk = await runWrk({ target: w.httpsUrl, requests, connections: CLIENTS, threads: 2, durationS: BURST_S, timeoutS: 5 });
    const burstCpu = cpuSince(w, cpu0);
    const certs = (await issued()) - before;
    log(`ocsp-upkeep: burst ${num(wrk.rps)}/s, ${certs} certificates, ${describeErrors(wrk)}`);
    // Until quiet: every new certificate has its response.
    const cpu1 = cpuNow(w);
    const t1 = performance.now();
    await until(async () => (await pending()) === 0, 15 * 60_000);
    const upkeepS = (performance.now() - t1) / 1000;
    const upkeepCpu = cpuSince(w, cpu1);
    log(`ocsp-upkeep: caught up in ${upkeepS.toFixed(1)} s`);
    // The leader's view (each scrape reaches one worker; the leader's has a measured capacity).
    for (let i = 0; i < 10; i++) {
      const text = await (await fetch(`${w.httpUrl}/metrics`)).text();
      const capacity = Number(/^hsmca_ocsp_signing_capacity (\S+)$/m.exec(text)?.[1] ?? 0);
      if (capacity > 0) {
        section.facts["leader's measured OCSP signing capacity"] = `${num(capacity)}/s`;
        section.facts["leader's pre-signing rate (at rest)"] = `${num(Number(/^hsmca_ocsp_presign_rate (\S+)$/m.exec(text)?.[1] ?? 0))}/s`;
        break;
      }
    }

    const [check] = await sql`
      select count(*)::int as certs,
             count(r.serial)::int as with_response,
             count(*) filter (where r.next_update > now() and r.status = 'good')::int as current_good
      from certificates c left join ocsp_responses r on r.serial = c.serial
      where c.profile = 'tls-server' and c.not_after > now()`;
    if (check!.certs !== check!.current_good) section.failed!.push(`${check!.certs} valid certificates but ${check!.current_good} current "good" responses`);
    section.notes.push(
      `After the burst every one of the ${check!.certs} valid certificates has exactly one stored response (ocsp_responses is keyed by serial), ${check!.current_good} of them current and "good"; pre-signing caught up ${upkeepS.toFixed(1)} s after the burst ended.`,
    );

    const perCert = (ms: number) => num(ms / Math.max(1, certs));
    section.tables.push({
      caption: `CPU per certificate, ${WORKERS} workers, PostgreSQL (${certs} certificates in ${BURST_S} s at ${CLIENTS} clients: ${num(wrk.rps)}/s)`,
      headers: ["phase", "service ms/cert", "PostgreSQL ms/cert", "total ms/cert", "× issuance"],
      rows: [
        ["issuance (the burst)", perCert(burstCpu.service), perCert(burstCpu.postgres), perCert(burstCpu.service + burstCpu.postgres), "1"],
        [
          `OCSP upkeep (until quiet, ${upkeepS.toFixed(1)} s)`,
          perCert(upkeepCpu.service),
          perCert(upkeepCpu.postgres),
          perCert(upkeepCpu.service + upkeepCpu.postgres),
          num((upkeepCpu.service + upkeepCpu.postgres) / Math.max(1, burstCpu.service + burstCpu.postgres)),
        ],
      ],
    });

    // At rest, with many certificates stored.
    const rest: Array<[string, string, string, string]> = [];
    const issuerId = Number((await sql`select issuer_id from certificates where profile = 'tls-server' limit 1`)[0]!.issuer_id);
    let stored = Number((await sql`select count(*)::int as n from certificates`)[0]!.n);
    for (const target of STORED) {
      if (target > stored) {
        log(`ocsp-upkeep: inserting ${target - stored} certificate rows`);
        await fillCertificates(sql, issuerId, stored, target);
        stored = target;
        await sql`vacuum analyze certificates`;
        await sql`vacuum analyze ocsp_responses`;
        await sleep(12_000); // past one pre-signing tick, and the autovacuum the inserts woke
      }
      const c0 = cpuNow(w);
      await sleep(REST_S * 1000);
      const c = cpuSince(w, c0);
      const pct = (ms: number) => `${num((ms / (REST_S * 1000)) * 100)}%`;
      rest.push([num(stored), pct(c.service), pct(c.postgres), pct(c.service + c.postgres)]);
      log(`ocsp-upkeep: at rest with ${stored} stored: service ${pct(c.service)}, PostgreSQL ${pct(c.postgres)} of a core`);
    }
    section.tables.push({
      caption: `At rest (nothing asked, ${REST_S} s): CPU as a share of one core`,
      headers: ["certificates stored", "service", "PostgreSQL", "total"],
      rows: rest,
    });
    section.notes.push("PostgreSQL's CPU counts every postgres process on the machine (autovacuum included); other load on the machine in the same window counts too.");
  } finally {
    await sql.end({ timeout: 5 });
    await w.cleanup();
  }
  if (!section.failed!.length) delete section.failed;
  return section;
}

function cpuNow(w: WorkersService) {
  return { service: w.cpuMs(), postgres: postgresCpu() };
}

function cpuSince(w: WorkersService, from: ReturnType<typeof cpuNow>): { service: number; postgres: number } {
  return { service: w.cpuMs() - from.service, postgres: postgresCpuSince(from.postgres) ?? 0 };
}

async function until(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs / 1000} s`);
    await sleep(POLL_MS);
  }
}

/** Certificate rows (and their stored responses, due in 11-12 h) from `from` to `to`, in chunks of 100k, with SQL. */
async function fillCertificates(sql: postgres.Sql, issuerId: number, from: number, to: number): Promise<void> {
  for (let start = from + 1; start <= to; start += 100_000) {
    const end = Math.min(to, start + 99_999);
    await sql`
      insert into certificates (serial, issuer_id, profile, subject, sans, status, not_before, not_after, certificate_pem, fingerprint_sha256, spki_sha256, ocsp_pending)
      select 'f1' || lpad(to_hex(g), 14, '0'), ${issuerId}, 'filler', 'CN=filler', '[]'::jsonb, 'valid', now() - interval '1 hour', now() + interval '30 days', 'filler', md5(g::text), md5(g::text), false
      from generate_series(${start}::int, ${end}::int) g`;
    await sql`
      insert into ocsp_responses (serial, issuer_id, status, this_update, next_update, der)
      select 'f1' || lpad(to_hex(g), 14, '0'), ${issuerId}, 'good', now(), now() + interval '11 hours' + (g % 3600) * interval '1 second', decode(repeat('00', 300), 'hex')
      from generate_series(${start}::int, ${end}::int) g`;
  }
}
