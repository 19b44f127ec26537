import type { Metrics } from "./catalogue.ts";

/**
 * The scheduler's observer (src/jobs/scheduler.ts JobsObserver, matched by
 * shape: the metrics do not depend on the jobs): leadership as a 0/1 gauge
 * per replica, each run counted and its start time kept, by result.
 */
export function jobsObserver(metrics: Metrics) {
  return {
    registered(job: { name: string }): void {
      // Known series start at 0, so that rate() sees the first run.
      for (const result of ["ok", "error"]) metrics.jobRuns.inc({ job: job.name, result }, 0);
    },
    leadership(replica: string, leading: boolean): void {
      metrics.jobsLeader.set({ replica }, leading ? 1 : 0);
    },
    ran(run: { job: string; result: "ok" | "error"; at: Date }): void {
      metrics.jobRuns.inc({ job: run.job, result: run.result });
      metrics.jobLastRun.set({ job: run.job, result: run.result }, run.at.getTime() / 1000);
    },
  };
}
