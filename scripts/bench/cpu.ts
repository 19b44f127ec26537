import { execFileSync } from "node:child_process";
import fs from "node:fs";

/**
 * CPU time spent, read from Linux's /proc: what a figure cost the machine,
 * not only the benchmarked process. With it a throughput says what bounds
 * it: CPU ms per operation × operations/s against the cores there are.
 */

export const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU ms of every PostgreSQL server process on this machine, by pid. */
export function postgresCpu(): Map<number, number> {
  const out = new Map<number, number>();
  for (const pid of fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      if (stat.slice(stat.indexOf("(") + 1, close) !== "postgres") continue;
      const f = stat.slice(close + 2).split(" ");
      out.set(Number(pid), ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** CPU ms the PostgreSQL processes spent since a snapshot (processes started meanwhile count whole); undefined when none is visible. */
export function postgresCpuSince(before: Map<number, number>): number | undefined {
  const after = postgresCpu();
  if (!after.size) return undefined;
  let ms = 0;
  for (const [pid, t] of after) ms += t - (before.get(pid) ?? 0);
  return ms;
}

/** Busy CPU ms of the whole machine (all cores; idle and iowait excluded), from /proc/stat. */
export function machineBusyMs(): number {
  const line = fs.readFileSync("/proc/stat", "utf8").split("\n")[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = f[3]! + f[4]!;
  return ((total - idle) * 1000) / CLK_TCK;
}

/** CPU ms (user + system) a process has used, from /proc/<pid>/stat; 0 once it is gone. */
export function processCpuMs(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
  } catch {
    return 0;
  }
}
