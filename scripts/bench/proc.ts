import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { log, REPO } from "./report.ts";

/** Helpers shared by the benchmarks: processes with time limits, tools, ports. Imports nothing of src/. */

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function hasCommand(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

/**
 * A Debian tool a benchmark needs: installed with apt-get when missing and
 * running as root; otherwise says what to install and returns false (the
 * caller skips that part).
 */
export function ensureTool(cmd: string, debPackage: string): boolean {
  if (hasCommand(cmd)) return true;
  if (process.getuid?.() !== 0) {
    log(`${cmd} is not installed: run \`apt-get install -y ${debPackage}\` as root; skipping what needs it`);
    return false;
  }
  log(`installing ${debPackage} (for ${cmd})`);
  const opts = { stdio: "ignore" as const, timeout: 300_000, env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } };
  if (spawnSync("apt-get", ["install", "-y", "-q", debPackage], opts).status !== 0) {
    spawnSync("apt-get", ["update", "-q"], opts);
    spawnSync("apt-get", ["install", "-y", "-q", debPackage], opts);
  }
  if (hasCommand(cmd)) return true;
  log(`could not install ${debPackage}; skipping what needs ${cmd}`);
  return false;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a command to completion, killed after timeoutMs. Throws unless it exits 0 (when check). */
export function run(cmd: string, args: string[], opts: { input?: string | Buffer; cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; check?: boolean } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on("data", (d: Buffer) => out.push(d));
    child.stderr!.on("data", (d: Buffer) => err.push(d));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 120_000);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const r = { code, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8"), ms: performance.now() - started };
      if (opts.check !== false && code !== 0) {
        reject(new Error(`${cmd} ${args.join(" ").slice(0, 200)} failed (${signal ?? `exit ${code}`}): ${r.stderr.slice(-2000)}`));
      } else resolve(r);
    });
    child.stdin!.on("error", () => {});
    child.stdin!.end(opts.input);
  });
}

/** A long-running helper process (a server), ended with stop(). */
export class Background {
  private exited = false;
  readonly output: string[] = [];

  constructor(readonly child: ChildProcess, readonly name: string) {
    child.stdout?.on("data", (d: Buffer) => this.keep(d));
    child.stderr?.on("data", (d: Buffer) => this.keep(d));
    child.on("exit", () => (this.exited = true));
  }

  static start(name: string, cmd: string, args: string[], opts: SpawnOptions = {}): Background {
    return new Background(spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts }), name);
  }

  private keep(d: Buffer): void {
    this.output.push(d.toString("utf8"));
    if (this.output.length > 200) this.output.splice(0, 100);
  }

  get alive(): boolean {
    return !this.exited;
  }

  /** The first stdout line matching re (e.g. a port announcement). */
  waitForLine(re: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      let buf = "";
      const timer = setTimeout(() => reject(new Error(`${this.name}: no line matching ${re} within ${timeoutMs} ms: ${this.output.join("").slice(-500)}`)), timeoutMs);
      const onData = (d: Buffer) => {
        buf += d.toString("utf8");
        const m = re.exec(buf);
        if (m) {
          clearTimeout(timer);
          this.child.stdout!.off("data", onData);
          resolve(m);
        }
      };
      this.child.stdout!.on("data", onData);
      this.child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited (${code}) before announcing itself: ${this.output.join("").slice(-1000)}`));
      });
    });
  }

  async stop(): Promise<void> {
    if (this.exited || this.child.pid === undefined) return;
    const gone = new Promise<void>((r) => this.child.once("exit", () => r()));
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5_000);
    await gone;
    clearTimeout(timer);
  }
}

/** A loopback port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export async function waitForPort(port: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => (s.destroy(), resolve(true)));
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** Runs a TypeScript file of this repo in a child node process (through tsx). */
export function nodeTsArgs(file: string, args: string[] = []): string[] {
  return ["--import", "tsx", path.join(REPO, file), ...args];
}

/** Runs tasks with at most `limit` in flight. */
export async function pool<T>(count: number, limit: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, count) }, async () => {
      for (let i = next++; i < count; i = next++) out[i] = await task(i);
    }),
  );
  return out;
}
