// The benchmarks: `npm run bench` (all), `npm run bench -- <name>...`, `npm run bench -- list`.
// Each prints its figures with their ratios to a ceiling measured in the same
// run and rewrites its own section of docs/benchmarks.md.
//
// Every benchmark runs in a child process of its own (`--child <name>`): a
// process can hold one SoftHSM2 configuration only, and a fresh process
// leaves no heap or JIT state from the benchmark before.
import "reflect-metadata";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { DOC, log, machineFacts, printSection, updateDoc, type Section } from "./bench/report.ts";

interface Benchmark {
  describe: string;
  run(): Promise<Section>;
}

/** In the order `npm run bench` runs them and docs/benchmarks.md lists them. */
const BENCHMARKS: Record<string, Benchmark> = {
  signing: {
    describe: "ECDSA P-256 signatures/s: raw PKCS#11 C_Sign (the ceiling) vs the project's WebCrypto provider",
    run: async () => (await import("./bench/signing.ts")).runSigning(),
  },
  issuance: {
    describe: "REST issuance over HTTPS at 1, 16 and 64 clients, PostgreSQL, vs raw C_Sign and cfssl serve",
    run: async () => (await import("./bench/issuance.ts")).runIssuance("postgres"),
  },
  "issuance-paths": {
    describe: "the later issuance paths vs REST at 64 clients (PostgreSQL): lint gate off, Vault API sign, CA profile sub-CAs",
    run: async () => (await import("./bench/issuance-paths.ts")).runIssuancePaths(),
  },
  profile: {
    describe: "where a REST certificate's main-thread CPU goes, layer by layer (node --cpu-prof under wrk, PostgreSQL)",
    run: async () => (await import("./bench/profile.ts")).runProfile(),
  },
  lint: {
    describe: "lint before sign: leaf certificates, OCSP responses and CRLs with the gate on vs off",
    run: async () => (await import("./bench/lint.ts")).runLint(),
  },
  "issuance-pglite": {
    describe: "the same on the embedded PGlite database",
    run: async () => (await import("./bench/issuance.ts")).runIssuance("pglite"),
  },
  memory: {
    describe: "RSS over a 5-minute issuance run at 16 clients (PostgreSQL): growth after warm-up",
    run: async () => (await import("./bench/memory.ts")).runMemory(),
  },
  ocsp: {
    describe: "OCSP responses/s from the pre-signed cache (wrk), vs a fixed-response node:http server and cfssl ocspserve",
    run: async () => (await import("./bench/ocsp.ts")).runOcsp(),
  },
  "ocsp-upkeep": {
    describe: "OCSP upkeep CPU per certificate after a 20 s burst (2 workers, PostgreSQL) vs issuance's, and resting CPU with 100k and 1M certificates stored",
    run: async () => (await import("./bench/ocsp-upkeep.ts")).runOcspUpkeep(),
  },
  crl: {
    describe: "CRL build time and peak memory for 100k and 1M revoked entries, vs openssl ca -gencrl",
    run: async () => (await import("./bench/crl.ts")).runCrl(),
  },
  acme: {
    describe: "ACME orders/s with http-01 on loopback at 1, 8 and 32 order loops, vs REST issuance at the same concurrency",
    run: async () => (await import("./bench/acme.ts")).runAcme(),
  },
};

/** A whole benchmark may take this long before its process is killed. */
const BENCHMARK_TIMEOUT_MS = 15 * 60_000;

function usage(): string {
  const names = Object.entries(BENCHMARKS).map(([n, b]) => `  ${n.padEnd(8)} ${b.describe}`);
  return `usage: npm run bench [-- <name>...]   (no name: all)\n\n${names.join("\n")}\n`;
}

/** In the child: run one benchmark, write its section as JSON to `out`. */
async function child(name: string, out: string): Promise<number> {
  const t0 = performance.now();
  const section = await BENCHMARKS[name]!.run();
  section.seconds = (performance.now() - t0) / 1000;
  fs.writeFileSync(out, JSON.stringify(section));
  return 0;
}

function runChild(name: string): Promise<Section | undefined> {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "hsmca-bench-")), "section.json");
  const self = fileURLToPath(import.meta.url);
  return new Promise((resolve) => {
    // --expose-gc: the memory benchmark measures the live heap after a full collection.
    const p = spawn(process.execPath, ["--expose-gc", "--import", "tsx", self, "--child", name, out], { stdio: "inherit" });
    const timer = setTimeout(() => {
      log(`${name}: still running after ${BENCHMARK_TIMEOUT_MS / 60_000} minutes, killing it`);
      p.kill("SIGKILL");
    }, BENCHMARK_TIMEOUT_MS);
    p.on("close", (code, signal) => {
      clearTimeout(timer);
      let section: Section | undefined;
      if (code === 0 && fs.existsSync(out)) section = JSON.parse(fs.readFileSync(out, "utf8")) as Section;
      else log(`${name} failed (${signal ?? `exit ${code}`})`);
      fs.rmSync(path.dirname(out), { recursive: true, force: true });
      resolve(section);
    });
  });
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] === "--child") return child(argv[1]!, argv[2]!);
  if (argv.some((a) => a === "help" || a === "--help" || a === "-h" || a === "list")) {
    process.stdout.write(usage());
    return 0;
  }
  const unknown = argv.filter((a) => !(a in BENCHMARKS));
  if (unknown.length) {
    process.stderr.write(`unknown benchmark ${unknown.join(", ")}\n${usage()}`);
    return 2;
  }
  const names = argv.length ? Object.keys(BENCHMARKS).filter((n) => argv.includes(n)) : Object.keys(BENCHMARKS);
  const machine = machineFacts();
  log(`machine: ${Object.entries(machine).map(([k, v]) => `${k} ${v}`).join("; ")}`);
  const started = performance.now();
  const done: Section[] = [];
  let failures = 0;
  for (const name of names) {
    log(`running ${name}`);
    const section = await runChild(name);
    if (!section) {
      failures++;
      continue;
    }
    if (section.skipped) {
      log(`${name} skipped: ${section.skipped}`);
      continue;
    }
    printSection(section);
    if (section.failed?.length) {
      failures++;
      log(`${name}: checks failed, ${DOC} keeps its previous ${name} section:\n  ${section.failed.join("\n  ")}`);
      continue;
    }
    done.push(section);
  }
  if (done.length) {
    updateDoc(done, Object.keys(BENCHMARKS), machine);
    log(`wrote ${done.map((s) => s.name).join(", ")} to ${DOC}`);
  }
  log(`total ${((performance.now() - started) / 1000).toFixed(0)} s`);
  return failures ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
