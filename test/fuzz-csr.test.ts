/**
 * Hostile input, CSRs: mutated copies of real openssl CSRs POSTed to
 * /api/v1/certificates over HTTPS with an issuer token, as PEM with mutated
 * DER inside, as mutated PEM text, as mutated JSON bodies and as random
 * bytes. Deterministic (seeded), bounded in time (a per-request deadline).
 * Every answer must be a 4xx problem document, or 201 when a mutation is
 * still a CSR the profile accepts; never a 5xx, never a hang; nothing is
 * stored for a refusal; the service keeps answering.
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROBLEM_TYPE_PREFIX } from "../src/api/problem.ts";
import { parseCsr } from "../src/csr/parse-csr.ts";
import { Rejection } from "../src/errors.ts";
import { decide } from "../src/policy/decide.ts";
import { countCertificates } from "../src/store/certificates.ts";
import { derOfPem, fuzzClient, mutate, mutateText, pemOf, Rng, runPool, Tally } from "./helpers/fuzz.ts";
import { REPO } from "./helpers/cli.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

const SEED = 0x5eed_c5a;
const INPUTS = Number(process.env.HSM_CA_FUZZ_CSR_INPUTS ?? 10_000);
const CONCURRENCY = 16;
/** Straight through parseCsr and decide, in process: more inputs for the same time. */
const DIRECT_INPUTS = Number(process.env.HSM_CA_FUZZ_CSR_DIRECT_INPUTS ?? 10_000);

let t: TestService;
let token: string;

beforeAll(async () => {
  // The fuzzer is one token sending thousands of requests: no per-token limit here.
  process.env.HSM_CA_RATE_LIMIT_PER_TOKEN = "off";
  t = await startTestService("pglite", { HSM_CA_RATE_LIMIT_PER_TOKEN: "off" });
  token = await t.token("issuer", "tls-server", "spiffe-svid");
});

afterAll(async () => {
  await t?.stop();
});

interface Seed {
  profile: string;
  pem: string;
}

/**
 * Real openssl CSRs, made once (openssl genpkey + req -new -addext
 * subjectAltName=...) and kept as files, so that every run mutates the
 * same bytes: P-256, P-384 with a wildcard, RSA 2048, Ed25519, 20 SANs, and
 * an X.509-SVID request.
 */
function seeds(): Seed[] {
  const file = (name: string) => fs.readFileSync(path.join(REPO, "test/fixtures/fuzz", `${name}.csr`), "utf8");
  return [
    ...["p256", "p384", "rsa2048", "ed25519", "many-sans"].map((n) => ({ profile: "tls-server", pem: file(n) })),
    { profile: "spiffe-svid", pem: file("spiffe") },
  ];
}

describe("fuzzing POST /api/v1/certificates", () => {
  it(`answers ${INPUTS} mutated CSRs with 4xx problems (or 201), never 5xx, never hangs, stores nothing refused`, async () => {
    const base = seeds();
    const ders = base.map((s) => derOfPem(s.pem));
    const rng = new Rng(SEED);
    const before = await count();

    // The unmutated seeds first: the fuzzer starts from inputs the service accepts.
    const client = fuzzClient(t.service.httpsUrl, { ca: t.rootPem, sockets: CONCURRENCY, timeoutMs: 15_000 });
    const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
    for (const s of base) {
      const res = await client.request("POST", "/api/v1/certificates", JSON.stringify({ csr: s.pem, profile: s.profile }), headers);
      expect(res.status, res.body.toString()).toBe(201);
    }

    // Bodies made up front, in order, so the run is the same whatever the scheduling.
    const bodies: Array<{ kind: string; body: Uint8Array | string }> = [];
    for (let i = 0; i < INPUTS; i++) {
      const k = rng.int(base.length);
      const seed = base[k]!;
      const validity = rng.chance(0.5) ? undefined : rng.pick(["24h", "1h", "90d", "0s", "-1h", "x"]);
      const json = (csr: string) => JSON.stringify({ csr, profile: seed.profile, ...(validity ? { validity } : {}) });
      const roll = rng.int(100);
      if (roll < 65) {
        const m = mutate(ders[k]!, rng, ders);
        bodies.push({ kind: `der:${m.how[0]}`, body: json(pemOf(m.bytes)) });
      } else if (roll < 85) {
        bodies.push({ kind: "pem-text", body: json(mutateText(seed.pem, rng)) });
      } else if (roll < 95) {
        const m = mutate(new TextEncoder().encode(json(seed.pem)), rng);
        bodies.push({ kind: `json:${m.how[0]}`, body: m.bytes });
      } else {
        bodies.push({ kind: "random", body: rng.bytes(rng.int(4096)) });
      }
    }

    const outcomes = new Tally();
    const kinds201 = new Tally();
    const failures: string[] = [];
    let created = 0;
    const started = Date.now();
    await runPool(bodies.length, CONCURRENCY, async (i) => {
      const { kind, body } = bodies[i]!;
      let res;
      try {
        res = await client.request("POST", "/api/v1/certificates", body, headers);
      } catch (err) {
        failures.push(`#${i} ${kind}: ${(err as Error).message}`);
        return;
      }
      if (res.status === 201) {
        created++;
        kinds201.add(kind);
        outcomes.add("201");
        return;
      }
      const problem = parseProblem(res.body);
      if (res.status < 400 || res.status > 499 || !problem || problem.status !== res.status || !String(problem.type).startsWith(PROBLEM_TYPE_PREFIX)) {
        failures.push(`#${i} ${kind}: HTTP ${res.status} ${res.body.toString().slice(0, 300)} for ${Buffer.from(body).toString("base64").slice(0, 200)}`);
        dump(`csr-${i}.json`, body);
        return;
      }
      outcomes.add(`${res.status} ${String(problem.type).slice(PROBLEM_TYPE_PREFIX.length)}`);
    });
    const ms = Date.now() - started;
    client.close();
    console.log(`fuzz-csr: ${bodies.length} inputs in ${ms} ms (${Math.round((bodies.length / ms) * 1000)}/s, seed ${SEED}); ${outcomes}; 201 by kind: ${kinds201}`);

    expect(failures.slice(0, 10)).toEqual([]);
    // Nothing stored for a refusal: the count grew by the seeds and the 201s only.
    expect(await count()).toBe(before + base.length + created);
    // Still up and ready.
    const ready = await fetch(`${t.service.httpUrl}/readyz`);
    expect(ready.status).toBe(200);
  }, 300_000);
});

/** HSM_CA_FUZZ_DUMP=<dir> keeps the inputs that failed, to replay them. */
function dump(name: string, body: Uint8Array | string): void {
  const dir = process.env.HSM_CA_FUZZ_DUMP;
  if (dir) fs.writeFileSync(path.join(dir, name), body);
}

describe("fuzzing parseCsr and the policy decision in process", () => {
  it(`refuses ${DIRECT_INPUTS} mutated CSRs with a Rejection or accepts them, never another error`, async () => {
    const base = seeds();
    const ders = base.map((s) => derOfPem(s.pem));
    const rng = new Rng(SEED + 1);
    const outcomes = new Tally();
    const failures: string[] = [];
    const started = Date.now();
    for (let i = 0; i < DIRECT_INPUTS; i++) {
      const k = rng.int(base.length);
      const seed = base[k]!;
      const text = rng.chance(0.8) ? pemOf(mutate(ders[k]!, rng, ders).bytes) : mutateText(seed.pem, rng);
      try {
        const csr = await parseCsr(text);
        decide({ profile: t.service.ctx.profiles.get(seed.profile)!, csr, validity: rng.chance(0.5) ? "24h" : undefined, issuerNotAfter: new Date(Date.now() + 365 * 86_400_000) });
        outcomes.add("accepted");
      } catch (err) {
        if (err instanceof Rejection) outcomes.add(err.kind);
        else {
          failures.push(`#${i}: ${(err as Error).stack?.split("\n").slice(0, 3).join(" | ")}`);
          dump(`csr-direct-${i}.pem`, text);
        }
      }
    }
    console.log(`fuzz-csr (direct): ${DIRECT_INPUTS} inputs in ${Date.now() - started} ms (seed ${SEED + 1}); ${outcomes}`);
    expect(failures.slice(0, 10)).toEqual([]);
  }, 120_000);
});

function count(): Promise<number> {
  return countCertificates(t.service.ctx.store.db);
}

function parseProblem(body: Buffer): { type?: unknown; status?: unknown } | undefined {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    return undefined;
  }
}
