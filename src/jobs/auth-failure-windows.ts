import type { Job } from "./job.ts";

/**
 * On every replica (each counts the failures it saw): writes the aggregated
 * auth.failure entry of every client address whose window has ended
 * (src/api/auth-failures.ts). Structural, so that jobs import nothing from the edge.
 */
export function authFailureWindowsJob(windows: { sweepEveryMs: number; closeEnded(): void }): Job {
  return {
    name: "auth-failure-windows",
    runsOn: "every-replica",
    schedule: { everyMs: windows.sweepEveryMs },
    failure: "cannot write the authentication failures' summaries",
    run: async () => windows.closeEnded(),
  };
}
