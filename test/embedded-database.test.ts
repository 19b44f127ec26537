import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { REPO } from "./helpers/cli.ts";
import { tempDir } from "./helpers/openssl.ts";

/**
 * The embedded PGlite database (the default, no DATABASE_URL): its first
 * start (initdb) runs in a child process, so that initdb's WebAssembly
 * memory never stays in the service. Measured on PGlite 0.5: opening a
 * fresh directory in-process peaked at 860-1040 MiB of RSS, against about
 * 310 MiB with initdb in a child; an existing directory opens at about 280.
 * Each case runs in a process of its own, which reports its peak RSS
 * (VmHWM) and the database's settings.
 */
const PROBE = `
import fs from "node:fs";
import { sql } from "drizzle-orm";
import { openStore } from "./src/store/database.ts";
const store = await openStore({ dataDir: process.argv[1] });
const [row] = await store.db.execute(sql\`select current_setting('shared_buffers') as sb\`).then((r) => r.rows ?? r);
await store.close();
const peakMiB = Number(/VmHWM:\\s+(\\d+)/.exec(fs.readFileSync("/proc/self/status", "utf8"))[1]) / 1024;
console.log(JSON.stringify({ peakMiB, sharedBuffers: row.sb }));
`;

function openIn(dataDir: string): Promise<{ code: number; peakMiB?: number; sharedBuffers?: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ["--import", "tsx", "--input-type=module", "-e", PROBE, dataDir], { cwd: REPO, timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      const line = stdout.trim().split("\n").at(-1);
      resolve({ code, stderr, ...(code === 0 && line ? JSON.parse(line) : {}) });
    });
  });
}

describe("the embedded database", () => {
  it("is created without initdb's memory staying in the process, and reopened as it is", async () => {
    const dir = tempDir("hsmca-embedded-");
    try {
      const first = await openIn(dir);
      expect(first.code, first.stderr).toBe(0);
      expect(fs.existsSync(path.join(dir, "pglite", "PG_VERSION"))).toBe(true);
      // In-process initdb peaked at 860-1040 MiB here; in a child, about 310.
      expect(first.peakMiB).toBeLessThan(600);
      expect(first.sharedBuffers).toBe("32MB");
      const again = await openIn(dir);
      expect(again.code, again.stderr).toBe(0);
      expect(again.peakMiB).toBeLessThan(600);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);

  it("says in one line why it cannot be created", async () => {
    const dir = tempDir("hsmca-embedded-");
    try {
      // Where the database's directory should be, a file.
      fs.writeFileSync(path.join(dir, "pglite"), "not a directory");
      const r = await openIn(dir);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/cannot create the embedded database in \S+pglite: \S/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
