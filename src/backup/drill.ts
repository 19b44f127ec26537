import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadConfig, type Config } from "../config.ts";
import type { Manifest } from "./archive.ts";
import { BackupError } from "./errors.ts";
import { PASSPHRASE_VARIABLES } from "./passphrase.ts";
import { restoreBackup } from "./restore.ts";

/**
 * The restore drill: the archive restored into a scratch directory exactly
 * as a real restore would (token files, PINs, tables into a scratch PGlite),
 * then every key checked by drill-worker.ts in a child process, then the
 * scratch directory removed. Nothing outside the scratch directory changes.
 */
export class DrillError extends BackupError {}

export type DrillMode = "restored" | "configured" | "none";

export interface KeyCheck {
  /** "eab": the wrapping key of the EAB HMAC keys, checked by opening every sealed one. */
  role: "root" | "intermediate" | "ocsp" | "eab";
  subject: string;
  keyLabel: string;
  keyAlgorithm: string;
  /** The row's status (active, retired, revoked). */
  status: string;
  result: "PASS" | "FAIL" | "SKIP";
  reason?: string;
}

export interface DrillReport {
  mode: DrillMode;
  tables: number;
  rows: number;
  checks: KeyCheck[];
  warnings: string[];
}

/** Marks the worker's result lines, so that anything else a library prints is not mistaken for one. */
export const DRILL_LINE_PREFIX = "hsm-ca-drill ";

const WORKER = fileURLToPath(new URL("./drill-worker.ts", import.meta.url));
const WORKER_TIMEOUT_MS = 5 * 60_000;

export async function runDrill(manifest: Manifest, options: { config: Config; env: NodeJS.ProcessEnv }): Promise<DrillReport> {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "hsm-ca-drill-"));
  try {
    const mode: DrillMode = manifest.hsm.kind === "softhsm2" ? "restored" : manifest.hsm.kind === "hook" ? "configured" : "none";
    const env = workerEnv(manifest, options.env, scratch, mode);
    const restored = await restoreBackup(manifest, { config: loadConfig(env), force: false, restoreHsm: mode === "restored", env });
    const warnings = [...restored.warnings];
    if (mode === "configured") {
      warnings.push("the HSM part was made by HSM_CA_BACKUP_HOOK and a drill does not run the hook: the keys are checked on the configured HSM, not restored from the archive");
    }
    const checks = await runWorker(scratch, mode, env);
    return { mode, tables: restored.tables, rows: restored.rows, checks, warnings };
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * The child's settings. For the embedded token: only the scratch directory
 * and the token labels, so that nothing of this process's HSM or database
 * configuration leaks in. For a hook backup: this process's HSM settings,
 * but the scratch database. Never the passphrase.
 */
function workerEnv(manifest: Manifest, env: NodeJS.ProcessEnv, scratch: string, mode: DrillMode): Record<string, string> {
  const common = { HSM_CA_DATA_DIR: scratch, HSM_CA_HSM_SESSIONS: "1", HSM_CA_LOG_LEVEL: "silent" };
  if (mode === "restored" && manifest.hsm.kind === "softhsm2") {
    const labels: Record<string, string> = { HSM_CA_TOKEN_LABEL: manifest.hsm.tokenLabel };
    if (manifest.hsm.rootTokenLabel) labels.HSM_CA_ROOT_TOKEN_LABEL = manifest.hsm.rootTokenLabel;
    return { PATH: env.PATH ?? "", HOME: env.HOME ?? os.tmpdir(), ...labels, ...common };
  }
  const inherited = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
  for (const name of [...PASSPHRASE_VARIABLES, "DATABASE_URL"]) delete inherited[name];
  return { ...inherited, ...common };
}

function runWorker(scratch: string, mode: DrillMode, env: Record<string, string>): Promise<KeyCheck[]> {
  // tsx resolved from here, so that the child finds it whatever the current directory is.
  const args = ["--import", import.meta.resolve("tsx"), WORKER, scratch, mode];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env, stdio: ["ignore", "pipe", "pipe"], timeout: WORKER_TIMEOUT_MS });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr = (stderr + d).slice(-4096)));
    child.on("error", (err) => reject(new DrillError(`cannot start the drill worker: ${err.message}`)));
    child.on("close", (code, signal) => {
      if (code !== 0) {
        const last = stderr.trim().split("\n").pop()?.slice(0, 300);
        return reject(new DrillError(`the drill worker failed (${signal ?? `exit ${code}`})${last ? `: ${last}` : ""}`));
      }
      const checks = stdout
        .split("\n")
        .filter((l) => l.startsWith(DRILL_LINE_PREFIX))
        .map((l) => JSON.parse(l.slice(DRILL_LINE_PREFIX.length)) as KeyCheck);
      resolve(checks);
    });
  });
}
