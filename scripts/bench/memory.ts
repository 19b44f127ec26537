import { count, eq } from "drizzle-orm";
import { createApiToken } from "../../src/auth/api-tokens.ts";
import { certificates } from "../../src/store/schema.ts";
import { issuanceRequests, makeCsrs } from "./issuance.ts";
import { ensureTool } from "./proc.ts";
import { log, mib, num, type Section } from "./report.ts";
import { startBenchService } from "./service.ts";
import { describeErrors, runWrk, wrkErrors } from "./wrk.ts";

/**
 * Memory over a long issuance run: wrk keeps 16 clients issuing over HTTPS
 * (PostgreSQL) for 5 minutes while the service's RSS and V8 heap are sampled
 * every 5 s. The first minute is warm-up (JIT, caches, pools filling); the
 * target is no growth beyond 10% from the end of the first minute to the end.
 */

const DURATION_S = Number(process.env.BENCH_MEMORY_SECONDS ?? 300);
const WARMUP_S = Math.min(60, DURATION_S / 5);
const SAMPLE_MS = 5000;
const CLIENTS = 16;
const TARGET_GROWTH = 0.1;

export async function runMemory(): Promise<Section> {
  if (!ensureTool("wrk", "wrk")) return { name: "memory", title: "", summary: "", tables: [], facts: {}, notes: [], skipped: "wrk is not installed" };
  const csrs = await makeCsrs(256);
  const bench = await startBenchService({ HSM_CA_LOG_LEVEL: "error" }, "postgres");
  try {
    const { service } = bench;
    // OCSP pre-signing keeps every fresh response in a cache bounded at 200,000 entries (about 1.5 KiB each):
    // it grows with the certificates issued by design, so it is paused here and its size reported apart.
    await service.revocation.ocsp.stop();
    const token = await createApiToken(service.ctx.store.db, { role: "issuer", profiles: ["tls-server"], description: "bench" });
    const requests = issuanceRequests(csrs, token.secret);
    const samples: Array<{ s: number; rss: number; heap: number; live?: number }> = [];
    const t0 = performance.now();
    const gc = (globalThis as { gc?: () => void }).gc;
    const take = () => {
      const m = process.memoryUsage();
      // After a full collection what is left is what the service holds on to: a leak shows there first.
      gc?.();
      const live = gc ? process.memoryUsage().heapUsed / 1024 : undefined;
      samples.push({ s: (performance.now() - t0) / 1000, rss: m.rss / 1024, heap: m.heapUsed / 1024, live });
    };
    take();
    const timer = setInterval(take, SAMPLE_MS);
    const wrk = await runWrk({ target: service.httpsUrl, requests, connections: CLIENTS, threads: 2, durationS: DURATION_S, timeoutS: 5 });
    clearInterval(timer);
    take();
    const [stored] = await service.ctx.store.db.select({ n: count() }).from(certificates).where(eq(certificates.profile, "tls-server"));
    const afterWarmup = samples.find((x) => x.s >= WARMUP_S) ?? samples[0]!;
    const tail = samples.filter((x) => x.s >= DURATION_S - 30);
    const end = { rss: Math.max(...tail.map((x) => x.rss)), heap: Math.max(...tail.map((x) => x.heap)), live: Math.max(...tail.map((x) => x.live ?? NaN)) };
    const liveGrowth = afterWarmup.live ? end.live / afterWarmup.live - 1 : NaN;
    const peak = Math.max(...samples.map((x) => x.rss));
    const growth = end.rss / afterWarmup.rss - 1;
    const failed: string[] = [];
    if (wrkErrors(wrk) > 0) failed.push(`errors under load: ${describeErrors(wrk)}`);
    if (stored!.n < wrk.requests) failed.push(`${wrk.requests} answers but ${stored!.n} stored certificates`);
    log(`memory: ${num(wrk.rps)}/s for ${DURATION_S} s; RSS ${mib(afterWarmup.rss)} after warm-up, ${mib(end.rss)} at the end (${(growth * 100).toFixed(1)}%)`);
    const every = Math.max(1, Math.floor(samples.length / 12));
    return {
      name: "memory",
      title: "Memory over a long issuance run",
      summary: `wrk keeps ${CLIENTS} clients issuing tls-server certificates over HTTPS (PostgreSQL) for ${DURATION_S} s while the
service process's RSS and V8 heap are sampled every ${SAMPLE_MS / 1000} s. The reference is the RSS at the end of the first
${WARMUP_S} s (warm-up: JIT, caches and pools filling); the figure is the highest RSS of the last 30 s against it. Target: no
growth beyond ${TARGET_GROWTH * 100}%. Each sample also forces a full garbage collection and reads what is left of the V8 heap
(the live heap, where a leak would show; it costs a pause every ${SAMPLE_MS / 1000} s). The background OCSP pre-signing is paused for the run: it keeps each fresh response in
an in-memory cache bounded at 200,000 entries (about 1.5 KiB each), which grows with the number of certificates by design.`,
      tables: [
        {
          headers: ["figure", "value", "vs after warm-up", "target"],
          rows: [
            ["RSS after warm-up", mib(afterWarmup.rss), "1×", ""],
            ["RSS at the end (max of the last 30 s)", mib(end.rss), `${(100 * (growth + 1)).toFixed(1)}%`, growth <= TARGET_GROWTH ? `≤ ${100 + TARGET_GROWTH * 100}%: met` : `missed by ${((growth - TARGET_GROWTH) * 100).toFixed(1)} points`],
            ["peak RSS", mib(peak), `${((100 * peak) / afterWarmup.rss).toFixed(1)}%`, ""],
            ["V8 heap used after warm-up / at the end", `${mib(afterWarmup.heap)} / ${mib(end.heap)}`, "", ""],
            [
              "live heap after a full GC, after warm-up / at the end",
              Number.isNaN(liveGrowth) ? "n/a (run without --expose-gc)" : `${mib(afterWarmup.live!)} / ${mib(end.live)}`,
              Number.isNaN(liveGrowth) ? "" : `${(100 * (liveGrowth + 1)).toFixed(1)}%`,
              Number.isNaN(liveGrowth) ? "" : liveGrowth <= TARGET_GROWTH ? `≤ ${100 + TARGET_GROWTH * 100}%: flat` : `grew ${(liveGrowth * 100).toFixed(1)}%`,
            ],
            ["certificates issued (stored)", `${wrk.requests} (${stored!.n}) at ${num(wrk.rps)}/s`, "", ""],
          ],
        },
        {
          caption: "RSS over time:",
          headers: ["second", "RSS", "heap used", "live heap after GC"],
          rows: samples.filter((_, i) => i % every === 0 || i === samples.length - 1).map((x) => [Math.round(x.s), mib(x.rss), mib(x.heap), x.live === undefined ? "" : mib(x.live)]),
        },
      ],
      facts: { database: bench.db.version, clients: String(CLIENTS), seconds: String(DURATION_S) },
      notes: [`Every answer was a 201 (${describeErrors(wrk)}), and the database holds at least as many certificates as were answered.`],
      failed: failed.length ? failed : undefined,
    };
  } finally {
    await bench.cleanup();
  }
}
