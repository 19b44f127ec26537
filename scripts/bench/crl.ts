import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { sql } from "drizzle-orm";
import { loadConfig } from "../../src/config.ts";
import { openStore, type Store } from "../../src/store/database.ts";
import { ensureTool, nodeTsArgs, run, tempDir } from "./proc.ts";
import { log, mib, num, ratio, seconds, type Section } from "./report.ts";
import { startBenchService } from "./service.ts";

/**
 * CRL build time and peak memory: N revoked certificates of the active
 * intermediate in the certificates table, then one publication (full CRL and
 * its delta, signed in SoftHSM2 and stored) by CrlPublisher in a child
 * process of its own. The ceiling: `openssl ca -gencrl` over the same
 * entries (an index.txt with the same serials, dates and reasons) and a
 * software P-256 key, timed and measured by /usr/bin/time -v.
 */

const SIZES = (process.env.BENCH_CRL_SIZES ?? "100000,1000000").split(",").map(Number);
/** PGlite is one process and slow at this size: above this, PostgreSQL only. */
const PGLITE_MAX = 100_000;

/** RFC 5280 reason codes as openssl's index.txt names them; 0 (unspecified) is written without a reason, as hsm-ca leaves it out. */
const OPENSSL_REASON: Record<number, string> = { 1: "keyCompromise", 3: "affiliationChanged", 4: "superseded", 5: "cessationOfOperation" };

interface WorkerResult {
  ms: number;
  readMs: number;
  buildMs: number;
  saveMs: number;
  loadMs: number;
  rows: number;
  rssBeforeKiB: number;
  maxRssKiB: number;
  fullEntries: number;
  deltaEntries: number;
  fullBytes: number;
  deltaBytes: number;
}

interface Measured {
  n: number;
  hsm: WorkerResult;
  openssl: { ms: number; maxRssKiB: number; derBytes: number };
}

export async function runCrl(): Promise<Section> {
  const section: Section = {
    name: "crl",
    title: "CRL build time and peak memory",
    summary: `N revoked, unexpired certificates of the active intermediate are inserted into the \`certificates\` table (SQL
\`generate_series\`: random 16-byte serials, revocation times in the last 30 days, reasons unspecified, keyCompromise,
superseded, cessationOfOperation, affiliationChanged). A child process then runs \`CrlPublisher.publishIssuerById(issuer,
{ full: true })\` once: it reads the entries, builds and signs (P-256 key in SoftHSM2) the full CRL and its delta, and stores
both. Its time is that call's; its peak memory is the child's \`maxRSS\` (Node, tsx, the HSM module and the database driver
included: the RSS before the call is shown too). The ceiling is OpenSSL's own CRL generation, \`openssl ca -gencrl\` with a
software P-256 key over an index.txt holding the same serials, dates and reasons, timed as a whole process (reading
index.txt, signing, writing PEM) with its peak RSS from \`/usr/bin/time -v\`. Above 1×, hsm-ca takes longer / more memory.`,
    tables: [],
    facts: {},
    notes: [],
  };
  if (!ensureTool("/usr/bin/time", "time")) {
    section.skipped = "/usr/bin/time is missing (Debian package `time`): no ceiling to measure against";
    return section;
  }
  const bench = await startBenchService();
  const work = tempDir("hsmca-bench-crl-");
  const measured: Measured[] = [];
  try {
    section.facts.database = bench.db.version;
    const issuer = bench.service.ctx.issuer();
    const issuerId = issuer.row.id;
    const intermediatePem = path.join(work, "intermediate.pem");
    fs.writeFileSync(intermediatePem, issuer.chainPem);
    const workerEnv = { ...process.env, ...bench.env, HSM_CA_PUBLIC_HTTP_URL: bench.service.httpUrl, BENCH_ISSUER_ID: String(issuerId), BENCH_CRL_DIR: work };
    // The service's own publisher and revocation watcher would react to the rows: it stays stopped from here on.
    await bench.stop();
    log(`CRL: ${bench.db.kind === "postgres" ? "PostgreSQL" : "PGlite"} (${bench.db.version}), issuer ${issuerId} (${issuer.row.keyAlgorithm} in SoftHSM2)`);

    const ca = await opensslCa(work);
    let have = 0;
    for (const n of SIZES) {
      if (bench.db.kind === "pglite" && n > PGLITE_MAX) {
        section.notes.push(`${num(n)} entries: not measured: this run used PGlite (PostgreSQL not reachable, or HSM_CA_BENCH_DB=pglite), too slow at this size; PostgreSQL only.`);
        continue;
      }
      const store = await openStore(loadConfig(bench.env));
      try {
        log(`CRL: inserting ${num(n - have)} revoked rows`);
        const t0 = performance.now();
        await insertRevoked(store, issuerId, have, n - have);
        have = n;
        log(`CRL:   ${seconds(performance.now() - t0)}; writing index.txt for openssl`);
        await writeIndex(store, issuerId, path.join(ca.dir, "index.txt"));
      } finally {
        await store.close();
      }

      log(`CRL: ${num(n)} entries, hsm-ca (child process)`);
      const hsm = await runWorker(workerEnv);
      if (hsm.fullEntries !== n) throw new Error(`hsm-ca's full CRL has ${hsm.fullEntries} entries, not ${n}`);
      await checkCrl(path.join(work, "full.der"), "DER", intermediatePem, n, "hsm-ca full CRL");
      await checkCrl(path.join(work, "delta.der"), "DER", intermediatePem, hsm.deltaEntries, "hsm-ca delta CRL");
      log(`CRL:   ${seconds(hsm.ms)}, peak RSS ${mib(hsm.maxRssKiB)}; openssl ca -gencrl`);
      const openssl = await ca.gencrl();
      await checkCrl(path.join(ca.dir, "crl.pem"), "PEM", ca.certPem, n, "openssl CRL");
      log(`CRL:   ${seconds(openssl.ms)}, peak RSS ${mib(openssl.maxRssKiB)}`);
      measured.push({ n, hsm, openssl });
    }

    section.tables.push({
      headers: ["entries", "hsm-ca time", "openssl time", "time ratio", "hsm-ca peak RSS", "(before the call)", "openssl peak RSS", "RSS ratio", "hsm-ca full CRL", "openssl CRL (DER)"],
      rows: measured.map((m) => [
        num(m.n),
        seconds(m.hsm.ms),
        seconds(m.openssl.ms),
        ratio(m.hsm.ms, m.openssl.ms),
        mib(m.hsm.maxRssKiB),
        mib(m.hsm.rssBeforeKiB),
        mib(m.openssl.maxRssKiB),
        ratio(m.hsm.maxRssKiB, m.openssl.maxRssKiB),
        `${num(m.hsm.fullBytes / 2 ** 20)} MiB`,
        `${num(m.openssl.derBytes / 2 ** 20)} MiB`,
      ]),
    });
    section.tables.push({
      caption:
        "Where hsm-ca's time goes: each step again on its own, in the same child after the publication (warm caches): reading the entries (`revokedEntries`, pages of 10,000 by id), building and signing the full CRL (`buildCrl`), storing it (`saveCrl`, an upsert of the same row), loading it back (`latestCrl`, as the CRL route does per request and `publishDue` every minute). In brackets: the ratio to openssl's whole run for the same N.",
      headers: ["entries", "read entries", "build + sign", "store", "load stored CRL", "sum of the first three / publication"],
      rows: measured.map((m) => {
        const vsOpenssl = (ms: number) => `${seconds(ms)} (${ratio(ms, m.openssl.ms)} openssl)`;
        return [
          num(m.n),
          vsOpenssl(m.hsm.readMs),
          vsOpenssl(m.hsm.buildMs),
          vsOpenssl(m.hsm.saveMs),
          vsOpenssl(m.hsm.loadMs),
          ratio(m.hsm.readMs + m.hsm.buildMs + m.hsm.saveMs, m.hsm.ms),
        ];
      }),
    });
    const deltas = [...new Set(measured.map((m) => m.hsm.deltaEntries))].join(" or ");
    section.notes.push(
      `Checked: every CRL (hsm-ca's full and delta, openssl's) verifies with \`openssl crl -CAfile <issuer> -noout\` ("verify OK"), and \`openssl crl -text\` lists exactly N entries in each full CRL; the delta CRLs list ${deltas} (every revocation is older than the full CRL).`,
    );
    return section;
  } finally {
    await bench.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** `count` revoked certificates of the issuer, ids after the existing ones, in one statement. */
async function insertRevoked(store: Store, issuerId: number, from: number, count: number): Promise<void> {
  await store.db.execute(
    sql.raw(`
      insert into certificates (serial, issuer_id, profile, subject, sans, status, not_before, not_after,
                                certificate_pem, fingerprint_sha256, spki_sha256, revoked_at, revocation_reason, revoked_by)
      select substr('1234567', 1 + floor(random() * 7)::int, 1) || substr(md5(random()::text || g::text), 2),
             ${Number(issuerId)}, 'bench', 'CN=bench', '[]'::jsonb, 'revoked',
             now() - interval '60 days', now() + interval '300 days',
             'bench', md5(g::text), 'bench',
             date_trunc('second', now() - interval '1 minute' - random() * interval '30 days'),
             (array[0, 1, 4, 5, 3])[1 + floor(random() * 5)::int], 'bench'
      from generate_series(${from + 1}, ${from + count}) g`),
  );
  await store.db.execute(sql.raw("analyze certificates"));
}

/** openssl's index.txt for the issuer's revoked certificates, formatted by the database. */
async function writeIndex(store: Store, issuerId: number, file: string): Promise<void> {
  const out = fs.createWriteStream(file);
  let afterId = 0;
  for (;;) {
    const res = (await store.db.execute(
      sql`select id, 'R' || E'\t' || to_char(not_after at time zone 'UTC', 'YYMMDDHH24MISS') || 'Z' || E'\t'
                 || to_char(revoked_at at time zone 'UTC', 'YYMMDDHH24MISS') || 'Z'
                 || coalesce(',' || (case revocation_reason when 1 then ${OPENSSL_REASON[1]} when 3 then ${OPENSSL_REASON[3]}
                                                           when 4 then ${OPENSSL_REASON[4]} when 5 then ${OPENSSL_REASON[5]} end), '')
                 || E'\t' || upper(serial) || E'\tunknown\t/CN=x' as line
          from certificates
          where issuer_id = ${issuerId} and status = 'revoked' and id > ${afterId}
          order by id limit 50000`,
    )) as unknown as Array<{ id: number | string; line: string }> | { rows: Array<{ id: number | string; line: string }> };
    const rows = Array.isArray(res) ? res : res.rows;
    if (rows.length === 0) break;
    const text = rows.map((r) => r.line).join("\n") + "\n";
    if (!out.write(text)) await new Promise<void>((r) => out.once("drain", () => r()));
    afterId = Number(rows.at(-1)!.id);
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

function runWorker(env: NodeJS.ProcessEnv): Promise<WorkerResult> {
  return run(process.execPath, nodeTsArgs("scripts/bench/crl-worker.ts"), { env, timeoutMs: 300_000 }).then((r) => {
    const m = /CRL_WORKER (\{.*\})/.exec(r.stdout);
    if (!m) throw new Error(`the CRL worker printed no result: ${r.stdout.slice(-500)} ${r.stderr.slice(-2000)}`);
    return JSON.parse(m[1]!) as WorkerResult;
  });
}

/** A software P-256 CA for `openssl ca -gencrl`, in its own directory. */
async function opensslCa(work: string) {
  const dir = path.join(work, "openssl-ca");
  fs.mkdirSync(dir);
  const f = (name: string) => path.join(dir, name);
  await run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f("ca.key"), "-out", f("ca.pem"), "-subj", "/CN=bench openssl CA", "-days", "365"], { timeoutMs: 30_000 });
  fs.writeFileSync(f("index.txt.attr"), "unique_subject = no\n");
  fs.writeFileSync(
    f("openssl.cnf"),
    `[ca]
default_ca = bench
[bench]
dir = ${dir}
database = $dir/index.txt
crlnumber = $dir/crlnumber
certificate = $dir/ca.pem
private_key = $dir/ca.key
new_certs_dir = $dir
default_md = sha256
default_crl_days = 1
crl_extensions = crl_ext
[crl_ext]
authorityKeyIdentifier = keyid:always
`,
  );
  return {
    dir,
    certPem: f("ca.pem"),
    async gencrl(): Promise<{ ms: number; maxRssKiB: number; derBytes: number }> {
      fs.writeFileSync(f("crlnumber"), "1000\n");
      const r = await run("/usr/bin/time", ["-v", "openssl", "ca", "-config", f("openssl.cnf"), "-gencrl", "-out", f("crl.pem")], { timeoutMs: 300_000 });
      const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr);
      if (!rss) throw new Error(`no maxrss from /usr/bin/time: ${r.stderr.slice(-1000)}`);
      // The wall time measured here (time -v has 10 ms steps); starting /usr/bin/time is in it, a millisecond or so.
      const ms = r.ms;
      const pem = fs.readFileSync(f("crl.pem"), "utf8");
      const derBytes = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64").length;
      return { ms, maxRssKiB: Number(rss[1]), derBytes };
    },
  };
}

/** openssl verifies the CRL's signature with the issuer and lists exactly `entries` revoked certificates. */
async function checkCrl(file: string, form: "DER" | "PEM", issuerPem: string, entries: number, what: string): Promise<void> {
  const v = await run("openssl", ["crl", "-inform", form, "-in", file, "-noout", "-CAfile", issuerPem], { timeoutMs: 120_000, check: false });
  if (v.code !== 0 || !/verify OK/.test(v.stderr + v.stdout)) throw new Error(`${what}: openssl does not verify it: ${v.stderr}`);
  const listed = await new Promise<number>((resolve, reject) => {
    const child = spawn("openssl", ["crl", "-inform", form, "-in", file, "-noout", "-text"], { stdio: ["ignore", "pipe", "ignore"] });
    const timer = setTimeout(() => child.kill("SIGKILL"), 300_000);
    let count = 0;
    readline.createInterface({ input: child.stdout }).on("line", (l) => {
      if (l.startsWith("    Serial Number: ")) count++;
    });
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(count);
      else reject(new Error(`${what}: openssl crl -text failed (${code})`));
    });
  });
  if (listed !== entries) throw new Error(`${what}: openssl lists ${listed} entries, expected ${entries}`);
}
