import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const BIN = path.join(REPO, "scripts/hsm-ca.mjs");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The environment a CLI run sees: the given variables and no others of this process (as a user's shell with only those set). */
function cliEnv(env: Record<string, string>): Record<string, string> {
  return { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", HSM_CA_LOG_LEVEL: "silent", ...env };
}

/**
 * Runs the real hsm-ca executable in a child process, as a user would.
 * Costs a node + tsx start (about a second and a half here): keep it for
 * what only a process shows (exit codes of the executable, first start,
 * signals, another SoftHSM2 configuration), use runCliInProcess otherwise.
 */
export function runCli(args: string[], env: Record<string, string>, timeoutMs = 60_000, cwd = REPO): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env: cliEnv(env) });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`hsm-ca ${args.join(" ")} did not finish in ${timeoutMs} ms`));
    }, timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/**
 * Runs an hsm-ca command in this process, through the same main() the
 * executable runs, with its own environment, working directory and
 * captured output: what a user sees, without a process start.
 *
 * The caveats come from what a process owns: a process has one SoftHSM2
 * configuration (the command must use the same data directory as any
 * service running in the test), `serve` and the commands that read
 * process.env themselves (backup, restore: the passphrase, the hook) need
 * runCli.
 */
export async function runCliInProcess(args: string[], env: Record<string, string>, cwd = REPO): Promise<CliResult> {
  if (["serve", "backup", "restore"].includes(args[0] ?? "")) throw new Error(`hsm-ca ${args[0]} reads this process's environment: use runCli`);
  const { runCommandLine } = await import("../../src/cli/terminal.ts");
  let stdout = "";
  let stderr = "";
  const code = await runCommandLine(args, { env: cliEnv(env), cwd, stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t) });
  return { code, stdout, stderr };
}
