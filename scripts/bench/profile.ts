import fs from "node:fs";
import path from "node:path";
import { cpuByLayer, newestProfile, type LayerShare } from "./cpu-layers.ts";
import { makeCsrs, issuanceRequests } from "./issuance.ts";
import { freePort, tempDir } from "./proc.ts";
import { num, type Section } from "./report.ts";
import { issuerTokenFromCli, startWorkersService } from "./service.ts";
import { runWrk } from "./wrk.ts";

/**
 * Where a REST certificate's server CPU goes, layer by layer: `hsm-ca
 * serve` (one process, PostgreSQL) runs under `node --cpu-prof` while wrk
 * posts CSRs at 64 connections; the profile's samples are charged to the
 * layer of their nearest non-Node frame (scripts/bench/cpu-layers.ts) and
 * divided by the certificates answered. This is the measured bound the
 * issuance figures are explained by.
 */

const SECONDS = Number(process.env.BENCH_PROFILE_SECONDS ?? 10);
const CLIENTS = Number(process.env.BENCH_PROFILE_CLIENTS ?? 64);
/** HSM_CA_WORKERS for the profiled service: with more than one, the busiest process's profile is read. */
const WORKERS = Number(process.env.BENCH_PROFILE_WORKERS ?? 1);

export async function profileRest(): Promise<{ answered: number; busyMs: number; layers: LayerShare[]; rps: number }> {
  const dir = tempDir("hsmca-bench-profile-");
  const profDir = path.join(dir, "prof");
  fs.mkdirSync(profDir);
  const csrs = await makeCsrs(256);
  const w = await startWorkersService(WORKERS, await freePort(), await freePort(), ["--cpu-prof", "--cpu-prof-dir", profDir]);
  try {
    const requests = issuanceRequests(csrs, await issuerTokenFromCli(w.env));
    const warmup = await runWrk({ target: w.httpsUrl, requests, connections: 16, threads: 2, durationS: 3 });
    const wrk = await runWrk({ target: w.httpsUrl, requests, connections: CLIENTS, threads: 2, durationS: SECONDS, timeoutS: 5 });
    // The profile is written when the process exits.
    await w.cleanup();
    const file = newestProfile(profDir);
    if (!file) throw new Error("the service wrote no CPU profile");
    // For a closer look (Chrome DevTools, speedscope): BENCH_PROFILE_KEEP=<file> keeps the profile.
    if (process.env.BENCH_PROFILE_KEEP) fs.copyFileSync(file, process.env.BENCH_PROFILE_KEEP);
    const { busyMs, layers } = cpuByLayer(file);
    // The profile holds the warm-up too: its certificates count.
    return { answered: wrk.requests + warmup.requests, busyMs, layers, rps: wrk.rps };
  } catch (err) {
    await w.cleanup().catch(() => {});
    throw err;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function runProfile(): Promise<Section> {
  const rest = await profileRest();
  const per = (ms: number) => ms / Math.max(1, rest.answered);
  return {
    name: "profile",
    title: "Where a REST certificate's CPU goes (profile)",
    summary: `The service (\`hsm-ca serve\`, one process, PostgreSQL, key in SoftHSM2) under \`node --cpu-prof\` while wrk posts
P-256 CSRs to \`POST /api/v1/certificates\` at ${CLIENTS} connections for ${SECONDS} s after a 3 s warm-up at 16 connections (the
profile holds both, and the certificates of both count; the service's start is in it too, so figures are slightly high). Each sample is charged to its nearest frame outside Node's own
JavaScript (scripts/bench/cpu-layers.ts): time in node:tls under postgres.js is the driver's. The main thread only: PKCS#11
signatures run on worker threads (src/hsm/sign-threads.ts) and PostgreSQL in its own processes. The profiler costs throughput, so the rate is below the
issuance section's.`,
    tables: [
      {
        caption: `${num(rest.rps)} certificates/s while profiled, ${num(rest.answered)} answered in all; main thread busy ${per(rest.busyMs).toFixed(3)} ms per certificate.`,
        headers: ["layer", "main-thread CPU ms per certificate", "share"],
        rows: rest.layers.map((l) => [l.layer, per(l.ms).toFixed(3), `${(l.share * 100).toFixed(1)}%`]),
      },
    ],
    facts: { clients: String(CLIENTS), seconds: String(SECONDS) },
    notes: [],
  };
}
