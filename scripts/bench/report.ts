import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * What every benchmark prints and writes: tables whose figures stand next to
 * their ratio to a ceiling measured in the same run, the machine they ran on,
 * and the command that reproduces them. docs/benchmarks.md is written only
 * from here, one section per benchmark, so its numbers always come from a run.
 */

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const DOC = path.join(REPO, "docs", "benchmarks.md");

export type Cell = string | number;

export interface Table {
  caption?: string;
  headers: string[];
  rows: Cell[][];
}

/** One benchmark's results: a section of docs/benchmarks.md. */
export interface Section {
  /** The sub-command: `npm run bench -- <name>`. */
  name: string;
  title: string;
  /** What is measured and against what, in a few sentences (markdown). */
  summary: string;
  tables: Table[];
  /** Facts of this run beyond the machine's (tool versions, database, sizes). */
  facts: Record<string, string>;
  /** Observations: checks passed, what was skipped and why. */
  notes: string[];
  /** Checks that failed: the figures are not trustworthy and the doc is left as it was. */
  failed?: string[];
  /** Why nothing was measured (a tool missing): the doc is left as it was, and the run does not fail. */
  skipped?: string;
  /** Wall-clock seconds the benchmark took, set by the dispatcher. */
  seconds?: number;
}

// ---------------------------------------------------------------------------
// Numbers

/** 12,345 / 12.3 / 0.123: integers grouped, small numbers to 3 significant digits. */
export function num(n: number, digits = 3): string {
  if (!Number.isFinite(n)) return "n/a";
  if (Math.abs(n) >= 100) return Math.round(n).toLocaleString("en-US");
  return Number(n.toPrecision(digits)).toString();
}

/** a / b as "0.42×"; "n/a" without both. */
export function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return "n/a";
  const r = a / b;
  return `${r >= 10 ? r.toFixed(1) : r >= 1 ? r.toFixed(2) : r.toPrecision(2)}×`;
}

export function seconds(ms: number): string {
  return ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

export function mib(kib: number): string {
  return `${num(kib / 1024)} MiB`;
}

// ---------------------------------------------------------------------------
// Output

export function markdownTable(t: Table): string {
  const esc = (c: Cell) => String(c).replaceAll("|", "\\|");
  const lines = [`| ${t.headers.map(esc).join(" | ")} |`, `|${t.headers.map(() => "---").join("|")}|`];
  for (const r of t.rows) lines.push(`| ${r.map(esc).join(" | ")} |`);
  return (t.caption ? `${t.caption}\n\n` : "") + lines.join("\n");
}

/** The console form: aligned columns. */
export function consoleTable(t: Table): string {
  const cells = [t.headers, ...t.rows.map((r) => r.map(String))];
  const widths = t.headers.map((_, i) => Math.max(...cells.map((r) => String(r[i] ?? "").length)));
  const line = (r: Cell[]) => r.map((c, i) => String(c).padEnd(widths[i]!)).join("  ").trimEnd();
  const out = [line(t.headers), widths.map((w) => "-".repeat(w)).join("  "), ...t.rows.map(line)];
  return (t.caption ? `${t.caption}\n` : "") + out.join("\n");
}

export function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

export function printSection(s: Section): void {
  const out = [`\n== ${s.title} ==`];
  for (const t of s.tables) out.push("", consoleTable(t));
  if (s.notes.length) out.push("", ...s.notes.map((n) => `- ${n}`));
  process.stdout.write(out.join("\n") + "\n");
}

// ---------------------------------------------------------------------------
// The machine

function output(cmd: string, args: string[]): string | undefined {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 10_000 }).trim() || undefined;
  } catch (err) {
    // Some tools print their version on stderr or exit non-zero (wrk -v).
    const e = err as { stdout?: string; stderr?: string; code?: string };
    if (e.code === "ENOENT") return undefined;
    return `${e.stdout ?? ""}${e.stderr ?? ""}`.trim() || undefined;
  }
}

function firstLine(cmd: string, args: string[]): string | undefined {
  return output(cmd, args)?.split("\n")[0]!.trim();
}

/** A tool's version: its first line, or all its lines joined (lines > 1). */
export function toolVersion(cmd: string, args: string[], lines = 1): string {
  const text = output(cmd, args);
  if (!text) return "not installed";
  return text.split("\n").slice(0, lines).map((l) => l.trim()).filter(Boolean).join(", ");
}

/** Facts that make absolute figures comparable between runs, and never hand-typed. */
export function machineFacts(): Record<string, string> {
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    nproc: firstLine("nproc", []) ?? String(os.availableParallelism()),
    cpu: os.cpus()[0]?.model.trim() ?? "unknown",
    memory: `${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    os: firstLine("sh", ["-c", ". /etc/os-release && echo $PRETTY_NAME"]) ?? `${os.type()} ${os.release()}`,
    node: process.version,
    openssl: toolVersion("openssl", ["version"]),
  };
}

// ---------------------------------------------------------------------------
// docs/benchmarks.md

const HEADER = `# Benchmarks

Written by \`npm run bench\` (all benchmarks) or \`npm run bench -- <name>\` (one
section): never edit the figures by hand. Absolute times drift on a shared
2-core machine, so every figure stands next to its ratio to a ceiling measured
in the same run on the same machine; compare ratios between runs, not times.
Each section says when it ran, on what, and how to reproduce it.

Peers run under the same load in the same run. cfssl (\`serve\`, \`ocspserve\`)
is Debian's golang-cfssl. step-ca (smallstep/certificates 0.19, REST
\`/1.0/sign\` and ACME) is not packaged as a command, so the bench builds it
(scripts/bench/step-ca.ts) into \`~/.cache/hsm-ca-bench/step-ca\`
(\`BENCH_STEPCA_CACHE\`), never into the repository: \`apt-get source
golang-github-smallstep-certificates\` (as root it adds a deb-src line,
\`/etc/apt/sources.list.d/hsm-ca-bench-src.sources\`, and installs golang-go,
golang-github-smallstep-certificates-dev and dpkg-dev), copies
\`cmd/step-ca/main.go\` without the imports of the back-ends Debian lacks
(azurekms, cloudkms, cloudcas, vaultcas, yubikey) and runs \`go build\` with
\`GO111MODULE=off GOPATH=<cache>/gopath:/usr/share/gocode\` (one to a few
minutes, once). It configures step-ca itself, without the step CLI: a P-256
root and intermediate from openssl, \`ca.json\` with a badgerv2 database, a
JWK provisioner whose public key is in ca.json and whose one-time tokens
(ES256 JWTs: iss, aud \`https://127.0.0.1/1.0/sign\`, sub and sans the CSR's
name, a unique jti) the bench signs with node:crypto before each timed
window, and an ACME provisioner (\`/acme/acme/directory\`; \`--resolver\`
points at the bench's DNS server; its http-01 validator fetches from port 80,
where the bench's responder listens). When it cannot build or start a peer,
the bench says why and leaves that peer out.
`;

const begin = (name: string) => `<!-- bench:${name}:begin -->`;
const end = (name: string) => `<!-- bench:${name}:end -->`;

/** Settings a run was given through the environment: part of the command that reproduces it. */
export function benchEnv(): string {
  return Object.entries(process.env)
    .filter(([k]) => k.startsWith("BENCH_") || k.startsWith("HSM_CA_BENCH_"))
    .map(([k, v]) => `${k}=${v}`)
    .sort()
    .join(" ");
}

export function sectionMarkdown(s: Section, machine: Record<string, string>): string {
  const facts = { ...machine, ...s.facts };
  const env = benchEnv();
  const parts = [
    `## ${s.title}`,
    "",
    `Reproduce: \`${env ? `${env} ` : ""}npm run bench -- ${s.name}\`${s.seconds !== undefined ? ` (took ${Math.round(s.seconds)} s)` : ""}.`,
    "",
    s.summary.trim(),
    "",
    ...s.tables.flatMap((t) => [markdownTable(t), ""]),
  ];
  if (s.notes.length) parts.push(...s.notes.map((n) => `- ${n}`), "");
  parts.push("This run:", "", ...Object.entries(facts).map(([k, v]) => `- ${k}: ${v}`));
  return `${begin(s.name)}\n${parts.join("\n")}\n${end(s.name)}`;
}

/**
 * Replaces (or appends) the section of each benchmark run, keeping the others
 * as their last run left them, in the dispatcher's order.
 */
export function updateDoc(sections: Section[], order: string[], machine: Record<string, string>): void {
  fs.mkdirSync(path.dirname(DOC), { recursive: true });
  const old = fs.existsSync(DOC) ? fs.readFileSync(DOC, "utf8") : "";
  const blocks = new Map<string, string>();
  for (const m of old.matchAll(/<!-- bench:([a-z0-9-]+):begin -->[\s\S]*?<!-- bench:\1:end -->/g)) blocks.set(m[1]!, m[0]);
  for (const s of sections) blocks.set(s.name, sectionMarkdown(s, machine));
  const names = [...order.filter((n) => blocks.has(n)), ...[...blocks.keys()].filter((n) => !order.includes(n))];
  fs.writeFileSync(DOC, `${HEADER}\n${names.map((n) => blocks.get(n)).join("\n\n")}\n`);
}
