import { AsnConvert } from "@peculiar/asn1-schema";
import { BasicOCSPResponse, OCSPResponse } from "@peculiar/asn1-ocsp";
import * as x509 from "@peculiar/x509";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sequence } from "../src/asn1/der-writer.ts";
import { buildCertId, issuerHashes, type IssuerKeyHashes } from "../src/ca/ocsp-cert-id.ts";
import { loadConfig } from "../src/config.ts";
import { createLogger } from "../src/logger.ts";
import { startService, type Service } from "../src/service.ts";
import { revokedSinceQuery } from "../src/store/certificates.ts";
import { pendingOcspQuery, staleOcspQuery } from "../src/store/ocsp.ts";
import { apiClient, type ApiRequest } from "./helpers/https.ts";
import { makeCsr } from "./helpers/openssl.ts";
import { startTestService, type TestService } from "./helpers/service.ts";
import { waitFor } from "./helpers/wait.ts";

/**
 * OCSP upkeep on PostgreSQL with two replicas on one database: each
 * response is signed once (by the jobs leader), the refresher finds due work
 * by index with 300k not-due certificates stored, every certificate has one
 * current response that both replicas answer "good", the backlog shows on
 * /metrics, and a revocation still changes the answer at once.
 */
let a: TestService;
let b: Service;
let apiB: ApiRequest;
let sql: postgres.Sql;
let admin: string;
let hashes: IssuerKeyHashes;

const LIFETIME_MS = 12 * 3_600_000;

beforeAll(async () => {
  a = await startTestService("postgres", { HSM_CA_OCSP_SIGN_RATE: "2000" });
  b = await startService(loadConfig({ ...a.env, HSM_CA_HTTPS_PORT: "0", HSM_CA_HTTP_PORT: "0" }), createLogger("silent"));
  apiB = apiClient(b.httpsUrl, a.rootPem);
  sql = postgres(a.env.DATABASE_URL!, { max: 2, onnotice: () => {} });
  admin = await a.token("admin");
  hashes = issuerHashes(a.service.ctx.issuer().certificate);
}, 120_000);
afterAll(async () => {
  await sql?.end();
  await b?.close();
  await a?.stop();
});

async function issueAt(api: ApiRequest, name: string): Promise<string> {
  const { csr } = makeCsr({ subject: `/CN=${name}`, san: `DNS:${name}` });
  const res = await api("POST", "/api/v1/certificates", { token: admin, json: { csr, profile: "tls-server", validity: "24h" } });
  expect(res.status, res.text).toBe(201);
  return res.body.serial as string;
}

/** Issues n certificates, alternating between the replicas, 8 at a time. */
async function burst(n: number, prefix: string): Promise<string[]> {
  const serials: string[] = [];
  for (let i = 0; i < n; i += 8) {
    const batch = Array.from({ length: Math.min(8, n - i) }, (_, j) => issueAt((i + j) % 2 ? apiB : a.api, `${prefix}${i + j}.example.test`));
    serials.push(...(await Promise.all(batch)));
  }
  return serials;
}

/** The certificate status one replica's plain-HTTP OCSP endpoint gives for a serial. */
async function ocspStatus(service: Service, serial: string): Promise<string> {
  const req = sequence(sequence(sequence(sequence(buildCertId(hashes, "sha1", serial).der))));
  const res = await fetch(`${service.httpUrl}/ocsp`, { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: Buffer.from(req) });
  const outer = AsnConvert.parse(new Uint8Array(await res.arrayBuffer()), OCSPResponse);
  if (outer.responseStatus !== 0) return `error ${outer.responseStatus}`;
  const basic = AsnConvert.parse(outer.responseBytes!.response.buffer, BasicOCSPResponse);
  const single = basic.tbsResponseData.responses[0]!;
  expect(Buffer.from(single.certID.serialNumber).toString("hex").replace(/^(00)+(?=.)/, "")).toBe(serial);
  const s = single.certStatus;
  return s.good !== undefined ? "good" : s.revoked ? "revoked" : "unknown";
}

async function presignedBy(service: Service): Promise<number> {
  return (await service.ctx.metrics!.ocspPresigned.get()).values.reduce((n, v) => n + v.value, 0);
}

async function metricsText(service: Service): Promise<string> {
  return (await fetch(`${service.httpUrl}/metrics`)).text();
}

const gauge = (text: string, name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);

/** EXPLAIN (ANALYZE, BUFFERS) of a drizzle query, as JSON. */
async function explain(query: { toSQL(): { sql: string; params: unknown[] } }) {
  const { sql: text, params } = query.toSQL();
  const [row] = await sql.unsafe(`explain (analyze, buffers, format json) ${text}`, params as never[]);
  return (row as unknown as { "QUERY PLAN": Array<{ Plan: PlanNode }> })["QUERY PLAN"][0]!.Plan;
}
interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Index Name"?: string;
  "Actual Rows": number;
  "Shared Hit Blocks": number;
  "Shared Read Blocks": number;
  Plans?: PlanNode[];
}
const nodes = (p: PlanNode): PlanNode[] => [p, ...(p.Plans ?? []).flatMap(nodes)];

describe("two replicas on one database", () => {
  it("sign each response once: the leader pre-signs, the follower's run does nothing", async () => {
    expect(a.service.jobs.leading).toBe(true);
    expect(b.jobs.leading).toBe(false);
    // What was there before (the listener certificate) is signed first.
    await a.service.jobs.runNow("ocsp-presigning");
    const before = (await presignedBy(a.service)) + (await presignedBy(b));
    const serials = await burst(40, "burst");
    // Both replicas' jobs are asked to run; only the leader's runs.
    await Promise.all([a.service.jobs.runNow("ocsp-presigning"), b.jobs.runNow("ocsp-presigning")]);
    expect(await b.jobs.runNow("ocsp-presigning")).toBeUndefined();
    await waitFor("nothing pending", async () => Number((await sql`select count(*)::int as n from certificates where ocsp_pending`)[0]!.n) === 0, { timeoutMs: 30_000 });

    const rows = await sql`select serial, status, next_update from ocsp_responses where serial = any(${serials})`;
    expect(rows).toHaveLength(40);
    expect(new Set(rows.map((r) => r.serial)).size).toBe(40);
    expect(rows.every((r) => r.status === "good" && (r.next_update as Date).getTime() > Date.now() + LIFETIME_MS / 2)).toBe(true);
    // Exactly one signature per certificate, over both replicas; none by the follower.
    expect(await presignedBy(b)).toBe(0);
    expect((await presignedBy(a.service)) + (await presignedBy(b)) - before).toBe(40);

    // Both answer "good" for each, the follower from the database the leader wrote (no signing while the client waits).
    const missesBefore = (await b.ctx.metrics!.ocspCacheMisses.get()).values[0]?.value ?? 0;
    for (const s of serials) {
      expect(await ocspStatus(a.service, s)).toBe("good");
      expect(await ocspStatus(b, s)).toBe("good");
    }
    expect((await b.ctx.metrics!.ocspCacheMisses.get()).values[0]?.value ?? 0).toBe(missesBefore);
    const dbHits = (await b.ctx.metrics!.ocspCacheHits.get()).values.find((v) => v.labels.tier === "database")?.value ?? 0;
    expect(dbHits).toBeGreaterThanOrEqual(40);

    // And a second run has nothing to do.
    await a.service.jobs.runNow("ocsp-presigning");
    expect((await presignedBy(a.service)) + (await presignedBy(b)) - before).toBe(40);
  }, 120_000);

  it("show the backlog, its age and the rate on /metrics", async () => {
    const ocsp = a.service.revocation.ocsp;
    await ocsp.stop();
    try {
      await burst(6, "backlog");
      await new Promise((r) => setTimeout(r, 1100));
      await ocsp.upkeep.survey();
      const text = await metricsText(a.service);
      expect(gauge(text, "hsmca_ocsp_backlog")).toBe(6);
      expect(gauge(text, "hsmca_ocsp_backlog_oldest_seconds")).toBeGreaterThanOrEqual(1);
      expect(gauge(text, "hsmca_ocsp_presign_rate")).toBeGreaterThanOrEqual(1);
      expect(text).toMatch(/^hsmca_ocsp_signing_capacity \d/m);
    } finally {
      ocsp.resume();
    }
    await a.service.jobs.runNow("ocsp-presigning");
    const text = await metricsText(a.service);
    expect(gauge(text, "hsmca_ocsp_backlog")).toBe(0);
    expect(gauge(text, "hsmca_ocsp_backlog_oldest_seconds")).toBe(0);
    expect(gauge(text, "hsmca_ocsp_signing_capacity")).toBeGreaterThan(0);
  }, 60_000);

  it("revocation changes the answer at once on both, and the leader re-signs it once", async () => {
    const [serial] = await burst(1, "revoke");
    await a.service.jobs.runNow("ocsp-presigning");
    expect(await ocspStatus(b, serial!)).toBe("good");
    const res = await apiB("POST", `/api/v1/certificates/${serial}/revoke`, { token: admin, json: { reason: "keyCompromise" } });
    expect(res.status, res.text).toBe(200);
    expect(await ocspStatus(a.service, serial!)).toBe("revoked");
    expect(await ocspStatus(b, serial!)).toBe("revoked");
    const [{ pending }] = (await sql`select ocsp_pending as pending from certificates where serial = ${serial!}`) as unknown as [{ pending: boolean }];
    expect(pending).toBe(true);
    await a.service.jobs.runNow("ocsp-presigning");
    const [stored] = await sql`select status from ocsp_responses where serial = ${serial!}`;
    expect(stored!.status).toBe("revoked");
    expect(Number((await sql`select count(*)::int as n from certificates where ocsp_pending`)[0]!.n)).toBe(0);
  }, 60_000);
});

describe("with 300k more certificates stored, none due", () => {
  beforeAll(async () => {
    const issuerId = a.service.ctx.issuer().row.id;
    await sql`
      insert into certificates (serial, issuer_id, profile, subject, sans, status, not_before, not_after, certificate_pem, fingerprint_sha256, spki_sha256, ocsp_pending)
      select 'f0' || lpad(to_hex(g), 14, '0'), ${issuerId}, 'tls-server', 'CN=filler', '[]'::jsonb, 'valid', now() - interval '1 hour', now() + interval '30 days', 'filler', md5(g::text), md5(g::text), false
      from generate_series(1, 300000) g`;
    await sql`
      insert into ocsp_responses (serial, issuer_id, status, this_update, next_update, der)
      select 'f0' || lpad(to_hex(g), 14, '0'), ${issuerId}, 'good', now(), now() + interval '11 hours' + (g % 3600) * interval '1 second', '\\x00'::bytea
      from generate_series(1, 300000) g`;
    await sql`analyze certificates`;
    await sql`analyze ocsp_responses`;
  }, 300_000);

  it("the due queries use their indexes and touch only due rows", async () => {
    const db = a.service.ctx.store.db;
    const pending = await explain(pendingOcspQuery(db, 256));
    const stale = await explain(staleOcspQuery(db, new Date(Date.now() + LIFETIME_MS / 2), 256));
    for (const [plan, index] of [
      [pending, "certificates_ocsp_pending_idx"],
      [stale, "ocsp_responses_next_update_idx"],
    ] as const) {
      const all = nodes(plan);
      expect(all.some((n) => n["Node Type"] === "Seq Scan"), JSON.stringify(plan)).toBe(false);
      expect(all.some((n) => n["Index Name"] === index), JSON.stringify(plan)).toBe(true);
      expect(plan["Actual Rows"]).toBe(0);
      // A few index pages (plus, until vacuum, the heap pages of the ~100 rows this file flipped out of the pending
      // index), not the thousands of pages of the 300k rows: a fresh database reads 2 to 3 blocks here.
      expect(plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]).toBeLessThan(150);
    }
  });

  it("every replica's revocation watch reads only the revoked rows, by index", async () => {
    // Asked every few seconds by every replica (src/revocation/revocation-watcher.ts): without its partial index
    // this read the whole table (5.5 ms a poll at 10k certificates in the ACME bench, growing with the table).
    const plan = await explain(revokedSinceQuery(a.service.ctx.store.db, new Date(Date.now() - 10_000)));
    const all = nodes(plan);
    expect(all.some((n) => n["Node Type"] === "Seq Scan"), JSON.stringify(plan)).toBe(false);
    expect(all.some((n) => n["Index Name"] === "certificates_revoked_at_idx"), JSON.stringify(plan)).toBe(true);
    expect(plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]).toBeLessThan(150);
  });

  it("a resting run costs a few milliseconds and signs nothing; a new burst is signed once, no more", async () => {
    const before = await presignedBy(a.service);
    const t0 = performance.now();
    await a.service.jobs.runNow("ocsp-presigning");
    const restMs = performance.now() - t0;
    expect(await presignedBy(a.service)).toBe(before);
    expect(restMs).toBeLessThan(500);

    const serials = await burst(16, "after");
    // runNow does nothing while the job's own tick runs (it may have started before the burst was stored): ask
    // until the burst is signed, then check it was signed once.
    await waitFor("the burst pre-signed", async () => {
      await a.service.jobs.runNow("ocsp-presigning");
      return (await presignedBy(a.service)) - before >= 16;
    }, { timeoutMs: 30_000 });
    expect((await presignedBy(a.service)) - before).toBe(16);
    for (const s of serials) expect(await ocspStatus(b, s)).toBe("good");
    // Every certificate has exactly one current response (the filler's are current too).
    const [{ missing }] = (await sql`
      select count(*)::int as missing from certificates c
      where c.not_after > now() and not exists (select 1 from ocsp_responses r where r.serial = c.serial and r.next_update > now())`) as unknown as [{ missing: number }];
    expect(missing).toBe(0);
  }, 120_000);
});
