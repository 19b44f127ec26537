import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { BIN, REPO, runCli } from "./helpers/cli.ts";
import { tempDir } from "./helpers/openssl.ts";

/**
 * What a new user sees: `hsm-ca serve` on the embedded defaults creates the
 * token, PINs, root and intermediate once, and a restart reuses them.
 */
const dataDir = tempDir("hsmca-first-");
const env = { HSM_CA_DATA_DIR: dataDir, HSM_CA_HTTPS_PORT: "0", HSM_CA_HTTP_PORT: "0" };
const running: ChildProcess[] = [];

afterAll(() => {
  for (const p of running) p.kill("SIGKILL");
  fs.rmSync(dataDir, { recursive: true, force: true });
});

interface Started {
  child: ChildProcess;
  stdout: string;
  logs: Array<Record<string, any>>;
  httpUrl: string;
}

function serve(): Promise<Started> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, "serve"], { cwd: REPO, env: { PATH: process.env.PATH ?? "", ...env } });
    running.push(child);
    const started: Started = { child, stdout: "", logs: [], httpUrl: "" };
    let buffer = "";
    const timer = setTimeout(() => reject(new Error("hsm-ca serve did not come up in 60 s")), 60_000);
    child.stdout!.on("data", (d) => (started.stdout += d));
    child.stderr!.on("data", (d) => {
      buffer += d;
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        const entry = JSON.parse(line);
        started.logs.push(entry);
        if (entry.msg === "hsm-ca is serving") {
          clearTimeout(timer);
          started.httpUrl = entry.http;
          resolve(started);
        }
      }
    });
    child.on("exit", (code) => reject(new Error(`hsm-ca serve exited with ${code}`)));
  });
}

function stop(p: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    p.once("exit", (code) => resolve(code));
    p.kill("SIGTERM");
  });
}

describe("first start on the embedded default", () => {
  let rootPem = "";

  it("creates the token, 0600 PINs with a warning, and the hierarchy, printing the transcript", async () => {
    const s = await serve();
    const warning = s.logs.find((l) => l.level === 40);
    expect(warning?.msg).toMatch(/generated the PINs of the embedded SoftHSM2 token.*production .* supplies its own PIN/);
    expect(fs.statSync(path.join(dataDir, "hsm/user.pin")).mode & 0o777).toBe(0o600);
    expect(s.stdout).toMatch(/Key ceremony: init/);
    expect(s.stdout).toMatch(/ROOT CA/);
    expect(s.stdout).toMatch(/INTERMEDIATE CA/);
    const pin = fs.readFileSync(path.join(dataDir, "hsm/user.pin"), "utf8").trim();
    expect(JSON.stringify(s.logs) + s.stdout).not.toContain(pin);
    rootPem = await (await fetch(`${s.httpUrl}/ca/root.pem`)).text();
    expect(rootPem).toMatch(/BEGIN CERTIFICATE/);
    // The CLI works while the service runs on PGlite (through the control socket).
    const status = await runCli(["status"], env);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/INTERMEDIATE CA \(active\)/);
    expect(await stop(s.child)).toBe(0);
  });

  it("reuses everything on restart: no new key, same root", async () => {
    const s = await serve();
    expect(s.stdout).not.toMatch(/Key ceremony/);
    expect(s.logs.some((l) => l.level === 40)).toBe(false);
    expect(await (await fetch(`${s.httpUrl}/ca/root.pem`)).text()).toBe(rootPem);
    expect(await stop(s.child)).toBe(0);
    const status = await runCli(["status"], env); // the service is gone: the CLI opens the database itself
    expect(status.stdout.match(/^(ROOT|INTERMEDIATE) CA/gm)).toHaveLength(2);
  });
});
