import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeAllSessionsForTest } from "./helpers/hsm-faults.ts";
import { makeCsr } from "./helpers/openssl.ts";
import { parsePrometheusText, type Scrape } from "./helpers/prometheus.ts";
import { BASE_URL } from "./helpers/postgres.ts";
import { RelyingParty } from "./helpers/relying-party.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

/**
 * GET /metrics as Prometheus scrapes it, on a real service: the counts move
 * with what the CA really did (HSM signatures, issuance, refusals,
 * revocations, OCSP answers, throttled requests), the state gauges say
 * what a dashboard would, and the text parses as the exposition format.
 */
const METRICS_TOKEN = "scrape-me-0123456789abcdef";
/** Small enough that a test can exceed it, large enough for the issuance burst. */
const RATE = "1/h burst 60";
const BURST = 50;

let t: TestService;
let issuerToken: string;
let adminToken: string;
let intermediateLabel: string;
const logLines: string[] = [];

async function scrape(base = t.service.httpUrl, token: string | null = METRICS_TOKEN): Promise<{ status: number; type: string | null; text: string; metrics: Scrape }> {
  const res = await fetch(`${base}/metrics`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const text = await res.text();
  return { status: res.status, type: res.headers.get("content-type"), text, metrics: res.status === 200 ? parsePrometheusText(text) : (undefined as never) };
}

beforeAll(async () => {
  t = await startTestService("postgres", { HSM_CA_METRICS_TOKEN: METRICS_TOKEN, HSM_CA_RATE_LIMIT_PER_TOKEN: RATE }, (line) => logLines.push(line));
  [issuerToken, adminToken] = await Promise.all([t.token("issuer", "tls-server", "code-signing"), t.token("admin")]);
  const cas = await t.api("GET", "/api/v1/cas", { token: adminToken });
  intermediateLabel = cas.body.items.find((c: any) => c.role === "intermediate" && c.status === "active").keyLabel;
});
afterAll(async () => {
  // The last test drops the database from under the service.
  await t?.stop().catch(() => {});
});

describe("GET /metrics", () => {
  it("answers only with the metrics token when one is configured, on both listeners", async () => {
    expect((await scrape(t.service.httpUrl, null)).status).toBe(401);
    expect((await scrape(t.service.httpUrl, "wrong-token-0123456789")).status).toBe(401);
    const plain = await scrape();
    expect(plain.status).toBe(200);
    expect(plain.type).toMatch(/^text\/plain; version=0\.0\.4/);
    const tls = await t.api("GET", "/metrics", { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(tls.status).toBe(200);
    expect(() => parsePrometheusText(tls.text)).not.toThrow();
  });

  it("parses as the Prometheus text format, with every family typed and the process metrics there", async () => {
    const { text, metrics } = await scrape();
    const expected: Array<[string, string]> = [
      ["hsmca_hsm_operation_duration_seconds", "histogram"],
      ["hsmca_hsm_operations_total", "counter"],
      ["hsmca_issuance_total", "counter"],
      ["hsmca_revocations_total", "counter"],
      ["hsmca_ocsp_requests_total", "counter"],
      ["hsmca_http_requests_total", "counter"],
      ["hsmca_rate_limited_total", "counter"],
      ["hsmca_hsm_up", "gauge"],
      ["hsmca_ca_expiry_seconds", "gauge"],
      ["hsmca_crl_age_seconds", "gauge"],
      ["hsmca_jobs_leader", "gauge"],
      ["hsmca_job_runs_total", "counter"],
      ["hsmca_job_last_run_timestamp_seconds", "gauge"],
      ["process_cpu_seconds_total", "counter"],
      ["nodejs_heap_size_used_bytes", "gauge"],
    ];
    for (const [name, type] of expected) {
      expect(metrics.types.get(name), name).toBe(type);
    }
    for (const name of metrics.types.keys()) expect(text).toContain(`# HELP ${name} `);
  });

  it("counts a burst of REST issuance as HSM signatures by the intermediate's key and as issued", async () => {
    const before = (await scrape()).metrics;
    const signLabels = { key_label: intermediateLabel, operation: "sign" };
    const { csr } = makeCsr({ san: "DNS:burst.example.test" });
    const results = await Promise.all(
      Array.from({ length: BURST }, () => t.api("POST", "/api/v1/certificates", { token: issuerToken, json: { csr, profile: "tls-server" } })),
    );
    expect(results.map((r) => r.status)).toEqual(Array(BURST).fill(201));
    const after = (await scrape()).metrics;

    const delta = (m: string, labels: Record<string, string>) => after.value(m, labels) - before.value(m, labels);
    expect(delta("hsmca_hsm_operation_duration_seconds_count", signLabels)).toBeGreaterThanOrEqual(BURST);
    expect(delta("hsmca_hsm_operations_total", { ...signLabels, result: "ok" })).toBeGreaterThanOrEqual(BURST);
    expect(after.value("hsmca_hsm_operations_total", { ...signLabels, result: "error" })).toBe(0);
    // Every signature fell in some bucket, and SoftHSM2 signs well within a second.
    expect(delta("hsmca_hsm_operation_duration_seconds_bucket", { ...signLabels, le: "1" })).toBe(delta("hsmca_hsm_operation_duration_seconds_count", signLabels));
    expect(delta("hsmca_issuance_total", { profile: "tls-server", outcome: "issued", source: "rest" })).toBe(BURST);
    expect(delta("hsmca_http_requests_total", { listener: "https", method: "POST", route: "/api/v1/certificates", status: "201" })).toBe(BURST);
  });

  it("counts a refused request as refused, and a request waiting for approval as pending_approval", async () => {
    const before = (await scrape()).metrics;
    const refused = await t.api("POST", "/api/v1/certificates", {
      token: issuerToken,
      json: { csr: makeCsr({ san: "DNS:app.example.invalid" }).csr, profile: "tls-server" },
    });
    expect(refused.status).toBe(400);
    const pending = await t.api("POST", "/api/v1/certificates", {
      token: issuerToken,
      json: { csr: makeCsr({ subject: "/CN=Release Signing/O=Example", key: "ec-p384" }).csr, profile: "code-signing" },
    });
    expect(pending.status).toBe(202);
    const after = (await scrape()).metrics;
    const delta = (labels: Record<string, string>) => after.value("hsmca_issuance_total", labels) - before.value("hsmca_issuance_total", labels);
    expect(delta({ profile: "tls-server", outcome: "refused", source: "rest" })).toBe(1);
    expect(delta({ profile: "tls-server", outcome: "issued" })).toBe(0);
    expect(delta({ profile: "code-signing", outcome: "pending_approval", source: "rest" })).toBe(1);
    expect(after.value("hsmca_approval_requests_pending", { kind: "issue" })).toBe(1);
    expect(after.value("hsmca_approval_requests_pending", { kind: "rotate" })).toBe(0);
  });

  it("counts revocations by reason, and OCSP answers with cache hits and misses", async () => {
    const before = (await scrape()).metrics;
    const issued = await t.api("POST", "/api/v1/certificates", { token: issuerToken, json: { csr: makeCsr({ san: "DNS:revoke.example.test" }).csr, profile: "tls-server" } });
    expect(issued.status).toBe(201);
    const revoked = await t.api("POST", `/api/v1/certificates/${issued.body.serial}/revoke`, { token: issuerToken, json: { reason: "keyCompromise" } });
    expect(revoked.status).toBe(200);
    const again = await t.api("POST", `/api/v1/certificates/${issued.body.serial}/revoke`, { token: issuerToken, json: { reason: "keyCompromise" } });
    expect(again.body.alreadyRevoked).toBe(true);

    const rp = new RelyingParty();
    const url = `${t.service.httpUrl}/ocsp`;
    for (const extra of [[], ["-no_nonce"], ["-no_nonce"]]) {
      const r = await rp.ocsp(url, t.chainPem, t.rootPem, { certPem: issued.body.certificate }, extra);
      expect(r.out).toMatch(/revoked/i);
    }
    const after = (await scrape()).metrics;
    const delta = (m: string, labels: Record<string, string> = {}) => after.value(m, labels) - before.value(m, labels);
    expect(delta("hsmca_revocations_total", { reason: "keyCompromise", source: "api" })).toBe(1);
    expect(delta("hsmca_ocsp_requests_total", { status: "revoked" })).toBe(3);
    // The nonce request bypasses the cache; the two others are each a hit or a miss, and the second one a hit.
    expect(delta("hsmca_ocsp_cache_hits_total") + delta("hsmca_ocsp_cache_misses_total")).toBe(2);
    expect(delta("hsmca_ocsp_cache_hits_total")).toBeGreaterThanOrEqual(1);
  });

  it("counts requests refused by the per-token rate limit", async () => {
    const before = (await scrape()).metrics;
    const reader = await t.token("auditor");
    const statuses: number[] = [];
    for (let i = 0; i < 65; i++) statuses.push((await t.api("GET", "/api/v1/certificates/ff", { token: reader })).status);
    const throttled = statuses.filter((s) => s === 429).length;
    expect(throttled).toBeGreaterThanOrEqual(5);
    const after = (await scrape()).metrics;
    expect(after.value("hsmca_rate_limited_total", { limiter: "api_token" }) - before.value("hsmca_rate_limited_total", { limiter: "api_token" })).toBe(throttled);
    expect(after.value("hsmca_http_requests_total", { route: "/api/v1/certificates/:serial", status: "429" })).toBe(throttled);
  });

  it("reports the state: HSM up with its pool, CA expiry, CRL age, rotation, audit checkpoint, database up", async () => {
    const { metrics } = await scrape();
    expect(metrics.value("hsmca_hsm_up")).toBe(1);
    expect(metrics.value("hsmca_database_up")).toBe(1);
    expect(metrics.value("hsmca_hsm_sessions")).toBe(4);
    expect(metrics.value("hsmca_hsm_queue_limit")).toBe(t.config.hsm.queueLimit);
    expect(metrics.has("hsmca_hsm_sessions_in_use")).toBe(true);
    expect(metrics.has("hsmca_hsm_queue_waiting")).toBe(true);
    const day = 86_400;
    expect(metrics.value("hsmca_ca_expiry_seconds", { role: "root" })).toBeGreaterThan(3000 * day);
    const intermediate = metrics.value("hsmca_ca_expiry_seconds", { role: "intermediate", status: "active" });
    expect(intermediate).toBeGreaterThan(300 * day);
    expect(intermediate).toBeLessThanOrEqual(365 * day);
    expect(metrics.has("hsmca_ca_info", { role: "intermediate", key_label: intermediateLabel })).toBe(true);
    // Rotates when 33% of 365 days remain: in about 245 days.
    const rotation = metrics.value("hsmca_rotation_next_seconds", { trigger: "remaining" });
    expect(rotation).toBeGreaterThan(240 * day);
    expect(rotation).toBeLessThan(intermediate);
    const crlAges = metrics.samples.filter((s) => s.name === "hsmca_crl_age_seconds" && s.labels.kind === "full");
    expect(crlAges.length).toBeGreaterThanOrEqual(2); // the root's and the intermediate's
    for (const s of crlAges) {
      expect(s.value).toBeGreaterThanOrEqual(0);
      expect(s.value).toBeLessThan(600);
    }
    expect(metrics.value("hsmca_crl_next_update_seconds", { kind: "full" })).toBeGreaterThan(0);
    expect(metrics.value("hsmca_audit_entries_since_checkpoint")).toBeGreaterThan(0);
    // One replica: it leads, and its first CRL publication (at start) succeeded.
    expect(metrics.samples.filter((s) => s.name === "hsmca_jobs_leader").map((s) => s.value)).toEqual([1]);
    expect(metrics.value("hsmca_job_runs_total", { job: "crl-publishing", result: "ok" })).toBeGreaterThanOrEqual(1);
    expect(metrics.value("hsmca_job_runs_total", { job: "crl-publishing", result: "error" })).toBe(0);
    expect(metrics.value("hsmca_job_last_run_timestamp_seconds", { job: "crl-publishing", result: "ok" })).toBeGreaterThan(Date.now() / 1000 - 600);
  });

  it("never shows the metrics token or an API token in the scrape or the logs", async () => {
    const { text } = await scrape();
    for (const secret of [METRICS_TOKEN, issuerToken, adminToken]) {
      expect(text).not.toContain(secret);
      expect(logLines.join("\n")).not.toContain(secret);
    }
  });

  it("still answers when the HSM and the database go away, and says so", async () => {
    closeAllSessionsForTest(t.service.hsm);
    const hsmDown = await scrape();
    expect(hsmDown.status).toBe(200);
    expect(hsmDown.metrics.value("hsmca_hsm_up")).toBe(0);
    expect(hsmDown.metrics.value("hsmca_hsm_unavailable_total")).toBeGreaterThanOrEqual(1);

    const dbName = new URL(t.env.DATABASE_URL!).pathname.slice(1);
    const admin = postgres(BASE_URL, { max: 1, onnotice: () => {} });
    await admin.unsafe(`drop database ${dbName} with (force)`);
    await admin.end();
    const started = Date.now();
    const dbDown = await scrape();
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(dbDown.status).toBe(200);
    expect(dbDown.metrics.value("hsmca_database_up")).toBe(0);
    expect(dbDown.metrics.has("hsmca_ca_expiry_seconds")).toBe(false);
    expect(dbDown.metrics.value("hsmca_audit_checkpoint_age_seconds")).toBeNaN();
  });
});
