/**
 * One piece of background work. "leader" jobs change shared state (CRLs,
 * OCSP responses, the hierarchy, keys, rows to expire or purge) and run on
 * the one replica that holds the lease; "every-replica" jobs keep a
 * process's own state current (its issuer, its caches, its listener's
 * certificate) and run in each process.
 */
export interface Job {
  /** Short and stable: the metric label and the dashboard row. */
  name: string;
  runsOn: "leader" | "every-replica";
  schedule: { everyMs: number } | { cron: string };
  /**
   * Besides the schedule, run once when the scheduler starts and, for a
   * leader job, whenever this replica becomes the leader (it may have been
   * leaderless for a while). "wait": the service starts serving after it.
   */
  startup?: "wait" | "background";
  /** The audit actor of what the job does (its key uses); unset: none of its own. */
  actor?: string;
  /** The log message when a run fails (the error is logged beside it); unset: the job logs its own failures. */
  failure?: string;
  /** One run. Throwing marks the run as failed. `at`: the time it was due (a cron tick), or now. */
  run(at: Date): Promise<void>;
}

export type JobResult = "ok" | "error";

export interface JobRun {
  job: string;
  result: JobResult;
  /** When it started. */
  at: Date;
  ms: number;
  error?: string;
}
