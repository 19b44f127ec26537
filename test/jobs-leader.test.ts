import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, REPO, runCli } from "./helpers/cli.ts";
import { apiClient } from "./helpers/https.ts";
import { makeCsr, tempDir, x509Text } from "./helpers/openssl.ts";
import { freePort } from "./helpers/ports.ts";
import { createTestDatabase } from "./helpers/postgres.ts";
import { parsePrometheusText, type Scrape } from "./helpers/prometheus.ts";

// Two `hsm-ca serve` processes on one PostgreSQL database and one token, as
// two replicas behind a load balancer: exactly one leads the background
// jobs, a leader job runs on it alone, and when it is killed (SIGKILL: no
// goodbye, the database sees the connection end) the other takes over
// within seconds and runs them.

interface Replica {
  name: string;
  child: ChildProcess;
  output: string;
  httpUrl: string;
  httpsUrl: string;
}

/** Leader jobs, and a job every replica runs. */
const LEADER_JOBS = ["crl-publishing", "ocsp-presigning", "audit-checkpoint", "key-cleanup", "approval-expiry", "acme-cleanup"];
const EVERY_REPLICA_JOB = "revocation-watch";

let db: Awaited<ReturnType<typeof createTestDatabase>>;
const dataDir = tempDir("hsmca-jobs-leader-");
let env: Record<string, string>;
const replicas: Replica[] = [];
let rootPem: string;

async function startReplica(): Promise<Replica> {
  const [httpsPort, httpPort] = [await freePort(), await freePort()];
  const child = spawn(process.execPath, [BIN, "serve"], {
    cwd: REPO,
    env: { PATH: process.env.PATH ?? "", HOME: "/tmp", ...env, HSM_CA_HTTPS_PORT: String(httpsPort), HSM_CA_HTTP_PORT: String(httpPort) },
  });
  const r: Replica = {
    name: `${os.hostname()}:${child.pid}`,
    child,
    output: "",
    httpUrl: `http://127.0.0.1:${httpPort}`,
    httpsUrl: `https://127.0.0.1:${httpsPort}`,
  };
  child.stdout!.on("data", (d) => (r.output += d));
  child.stderr!.on("data", (d) => (r.output += d));
  await waitFor(async () => r.output.includes('"msg":"hsm-ca is serving"') || (child.exitCode !== null && fail(`hsm-ca serve exited: ${r.output.slice(-2000)}`)), 120_000, "hsm-ca serve to start");
  return r;
}

function fail(message: string): never {
  throw new Error(message);
}

/** Polls until check() is true; throws after timeoutMs, saying what it waited for. */
async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`waited ${timeoutMs} ms for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function scrape(r: Replica): Promise<Scrape> {
  const res = await fetch(`${r.httpUrl}/metrics`);
  expect(res.status).toBe(200);
  return parsePrometheusText(await res.text());
}

const runs = (m: Scrape, job: string, result?: "ok" | "error") => m.value("hsmca_job_runs_total", result ? { job, result } : { job });

beforeAll(async () => {
  db = await createTestDatabase();
  env = {
    HSM_CA_DATA_DIR: dataDir,
    DATABASE_URL: db.url,
    HSM_CA_PROFILES_DIR: `${REPO}/profiles`,
    HSM_CA_HTTPS_HOST: "127.0.0.1",
    HSM_CA_HTTP_HOST: "127.0.0.1",
    // A leader job that ticks every second: what "once per tick" is counted on.
    HSM_CA_AUDIT_CHECKPOINT_INTERVAL: "1s",
    HSM_CA_LOG_LEVEL: "info",
  };
  // One after the other: the first creates the token's PINs and the hierarchy that the second opens.
  replicas.push(await startReplica());
  replicas.push(await startReplica());
  rootPem = await (await fetch(`${replicas[0]!.httpUrl}/ca/root.pem`)).text();
}, 300_000);

afterAll(async () => {
  for (const r of replicas) if (r.child.exitCode === null) r.child.kill("SIGKILL");
  await db?.drop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe("background jobs across two replicas", () => {
  let leader: Replica;
  let follower: Replica;

  it("have exactly one leader, and each replica names it", async () => {
    const scrapes = await Promise.all(replicas.map(scrape));
    const leading = scrapes.map((m, i) => m.value("hsmca_jobs_leader", { replica: replicas[i]!.name }));
    expect(leading.sort()).toEqual([0, 1]);
    leader = replicas[scrapes.findIndex((m, i) => m.value("hsmca_jobs_leader", { replica: replicas[i]!.name }) === 1)]!;
    follower = replicas.find((r) => r !== leader)!;
    // Each reports itself only: the sum over the replicas is the one leader.
    expect(scrapes.reduce((n, m) => n + m.value("hsmca_jobs_leader"), 0)).toBe(1);

    // The follower's dashboard says who leads.
    const auditor = (await runCli(["token", "create", "--role", "auditor"], env)).stdout.trim();
    const api = apiClient(follower.httpsUrl, rootPem);
    const login = await api("POST", "/dashboard/login", { raw: `token=${encodeURIComponent(auditor)}`, headers: { "content-type": "application/x-www-form-urlencoded" } });
    expect(login.status).toBe(303);
    const cookie = String(login.headers["set-cookie"]).split(";")[0]!;
    const page = await api("GET", "/dashboard", { headers: { cookie } });
    expect(page.status).toBe(200);
    expect(page.text).toContain(`data-leader="${leader.name}"`);
    expect(page.text).toMatch(/badge">follower</);
  }, 60_000);

  it("run a leader job on the leader alone, once per tick; every replica runs its own jobs", async () => {
    const started = Date.now();
    const [leaderBefore, followerBefore] = await Promise.all([scrape(leader), scrape(follower)]);
    await new Promise((r) => setTimeout(r, 4_000));
    const [leaderAfter, followerAfter] = await Promise.all([scrape(leader), scrape(follower)]);
    const seconds = (Date.now() - started) / 1000;

    const ticks = runs(leaderAfter, "audit-checkpoint") - runs(leaderBefore, "audit-checkpoint");
    expect(ticks).toBeGreaterThanOrEqual(2);
    // At most one run a tick (every second), and none on the follower: not twice per tick.
    expect(ticks).toBeLessThanOrEqual(Math.ceil(seconds) + 1);
    expect(runs(leaderAfter, "audit-checkpoint", "error")).toBe(0);
    for (const job of LEADER_JOBS) {
      expect(runs(followerAfter, job), job).toBe(0);
      expect(followerAfter.has("hsmca_job_runs_total", { job }), job).toBe(true);
    }
    // The first CRLs were published by the leader at its start.
    expect(runs(leaderAfter, "crl-publishing", "ok")).toBeGreaterThanOrEqual(1);
    for (const m of [leaderAfter, followerAfter]) {
      expect(runs(m, EVERY_REPLICA_JOB, "ok")).toBeGreaterThan(0);
      expect(m.value("hsmca_job_last_run_timestamp_seconds", { job: EVERY_REPLICA_JOB, result: "ok" })).toBeGreaterThan(started / 1000 - 2);
    }
    expect(runs(followerAfter, EVERY_REPLICA_JOB) - runs(followerBefore, EVERY_REPLICA_JOB)).toBeGreaterThan(0);
  }, 30_000);

  it("hand the lead over within seconds when the leader is killed, and the new leader runs the jobs", async () => {
    const exited = new Promise((resolve) => leader.child.once("exit", resolve));
    leader.child.kill("SIGKILL");
    await exited;
    const killedAt = Date.now();
    await waitFor(async () => (await scrape(follower)).value("hsmca_jobs_leader", { replica: follower.name }) === 1, 15_000, "the follower to lead");
    expect(follower.output).toContain('"msg":"this replica now leads the background jobs"');
    console.log(`lead taken over ${Date.now() - killedAt} ms after the SIGKILL`);

    // It catches up at once on what a leader publishes, then keeps the schedule.
    await waitFor(async () => runs(await scrape(follower), "crl-publishing", "ok") >= 1, 15_000, "the new leader to publish CRLs");
    await waitFor(async () => runs(await scrape(follower), "audit-checkpoint", "ok") >= 2, 15_000, "the new leader's audit checkpoints");

    // And a revocation now reaches the CRL through the new leader.
    const api = apiClient(follower.httpsUrl, rootPem);
    const issuer = (await runCli(["token", "create", "--role", "issuer", "--profile", "tls-server"], env)).stdout.trim();
    const issued = await api("POST", "/api/v1/certificates", { token: issuer, json: { csr: makeCsr({ san: "DNS:after-failover.example.test" }).csr, profile: "tls-server" } });
    expect(issued.status).toBe(201);
    const { serial, certificate } = issued.body as { serial: string; certificate: string };
    const crlUrl = /URI:(http\S+\.crl)/.exec(x509Text(certificate))![1]!.replace(/^http:\/\/[^/]+/, follower.httpUrl);
    expect((await api("POST", `/api/v1/certificates/${serial}/revoke`, { token: issuer, json: { reason: "keyCompromise" } })).status).toBe(200);
    const listed = async () => {
      const crl = new x509.X509Crl(new Uint8Array(await (await fetch(crlUrl)).arrayBuffer()));
      return crl.entries.some((e) => e.serialNumber.toLowerCase() === serial.toLowerCase());
    };
    await waitFor(listed, 15_000, "the revoked serial on the CRL");
  }, 90_000);
});
