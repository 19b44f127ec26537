import cron, { type ScheduledTask } from "node-cron";
import type { Logger } from "pino";
import { withActor } from "../audit/actor.ts";
import type { Job, JobRun } from "./job.ts";
import type { LeaderLease } from "./leader-lease.ts";

/** Told what the scheduler does (the metrics listen). */
export interface JobsObserver {
  registered?(job: Pick<Job, "name" | "runsOn">): void;
  leadership?(replica: string, leading: boolean): void;
  ran?(run: JobRun): void;
}

export interface JobStatus {
  name: string;
  runsOn: Job["runsOn"];
  /** "every 10 s" or the cron expression. */
  schedule: string;
  running: boolean;
  nextRun?: Date;
  /** This process's last run (a follower has none of a leader job's). */
  lastRun?: JobRun;
}

export interface JobsStatus {
  replica: string;
  leading: boolean;
  /** The replica that leads, as far as can be told. */
  leader?: string;
  jobs: JobStatus[];
}

interface Entry {
  job: Job;
  timer?: NodeJS.Timeout;
  task?: ScheduledTask;
  nextRun?: Date;
  running?: Promise<void>;
  lastRun?: JobRun;
}

/**
 * Every timer of the service: each job on its schedule, the leader jobs
 * only while this replica holds the lease (a follower skips their ticks).
 * A tick that finds the job's previous run still going is skipped. A run
 * that fails is logged and counted; the next tick runs it again.
 */
export class Scheduler {
  private readonly entries = new Map<string, Entry>();
  private readonly leadershipListeners: Array<(leading: boolean) => void> = [];
  private started = false;
  private stopped = false;

  constructor(
    private readonly deps: {
      lease: LeaderLease;
      log: Logger;
      observer?: JobsObserver;
    },
  ) {}

  get replica(): string {
    return this.deps.lease.replica;
  }

  /** Whether this replica runs the leader jobs now. */
  get leading(): boolean {
    return this.deps.lease.leading;
  }

  register(job: Job): void {
    if (this.entries.has(job.name)) throw new Error(`a job named ${job.name} is registered already`);
    const entry: Entry = { job };
    this.entries.set(job.name, entry);
    this.deps.observer?.registered?.(job);
    if (this.started && !this.stopped) this.arm(entry);
  }

  /** Told when this replica starts or stops leading. */
  onLeadership(listener: (leading: boolean) => void): void {
    this.leadershipListeners.push(listener);
  }

  /**
   * Takes the lease if it is free, runs the jobs that run at startup (those
   * marked "wait" before this resolves), then arms every schedule.
   */
  async start(): Promise<void> {
    this.started = true;
    let first = true;
    await this.deps.lease.start((leading) => {
      this.deps.observer?.leadership?.(this.replica, leading);
      for (const listener of this.leadershipListeners) listener(leading);
      // A new leader catches up at once on what may have waited while nobody led.
      if (leading && !first) for (const e of this.entries.values()) if (e.job.runsOn === "leader" && e.job.startup) void this.runEntry(e, new Date());
    });
    first = false;
    if (!this.leading) this.deps.observer?.leadership?.(this.replica, false);
    for (const e of this.entries.values()) {
      if (!e.job.startup) continue;
      const run = this.runEntry(e, new Date());
      if (e.job.startup === "wait") await run;
    }
    for (const e of this.entries.values()) this.arm(e);
  }

  /** Runs a job now, unless this replica may not (a leader job on a follower) or it is running already. */
  runNow(name: string): Promise<JobRun | undefined> {
    const entry = this.entries.get(name);
    if (!entry) throw new Error(`no job named ${name}`);
    return this.runEntry(entry, new Date());
  }

  /** When a job is due next (for a cron schedule, its next tick). */
  nextRun(name: string): Date | undefined {
    const e = this.entries.get(name);
    return e?.task?.getNextRun() ?? e?.nextRun ?? undefined;
  }

  async status(): Promise<JobsStatus> {
    return {
      replica: this.replica,
      leading: this.leading,
      leader: await this.deps.lease.leader(),
      jobs: [...this.entries.values()].map((e) => ({
        name: e.job.name,
        runsOn: e.job.runsOn,
        schedule: describeSchedule(e.job.schedule),
        running: e.running !== undefined,
        nextRun: this.nextRun(e.job.name),
        lastRun: e.lastRun,
      })),
    };
  }

  /**
   * Stops every schedule and gives up the lease (another replica takes over
   * while this one finishes). Runs in progress are not waited for: the
   * parts they use (OCSP, CRLs, audit) wait for their own work when they stop.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const e of this.entries.values()) {
      clearInterval(e.timer);
      void e.task?.stop();
    }
    await this.deps.lease.close();
  }

  private arm(entry: Entry): void {
    const { schedule } = entry.job;
    if ("cron" in schedule) {
      entry.task = cron.schedule(schedule.cron, (ctx) => void this.runEntry(entry, new Date(Math.floor(ctx.date.getTime() / 1000) * 1000)));
      return;
    }
    entry.nextRun = new Date(Date.now() + schedule.everyMs);
    entry.timer = setInterval(() => {
      entry.nextRun = new Date(Date.now() + schedule.everyMs);
      void this.runEntry(entry, new Date());
    }, schedule.everyMs);
    entry.timer.unref();
  }

  private async runEntry(entry: Entry, at: Date): Promise<JobRun | undefined> {
    const { job } = entry;
    if (this.stopped || entry.running) return undefined;
    if (job.runsOn === "leader" && !this.leading) return undefined;
    let done!: () => void;
    entry.running = new Promise<void>((resolve) => (done = resolve));
    const started = Date.now();
    let run: JobRun;
    try {
      await (job.actor ? withActor(job.actor, () => job.run(at)) : job.run(at));
      run = { job: job.name, result: "ok", at: new Date(started), ms: Date.now() - started };
    } catch (err) {
      const message = (err as Error).message;
      run = { job: job.name, result: "error", at: new Date(started), ms: Date.now() - started, error: message };
      if (job.failure) this.deps.log.error({ err: message, job: job.name }, job.failure);
    } finally {
      entry.running = undefined;
      done();
    }
    entry.lastRun = run;
    this.deps.observer?.ran?.(run);
    return run;
  }
}

function describeSchedule(schedule: Job["schedule"]): string {
  if ("cron" in schedule) return `cron "${schedule.cron}"`;
  const ms = schedule.everyMs;
  if (ms % 3_600_000 === 0) return `every ${ms / 3_600_000} h`;
  if (ms % 60_000 === 0) return `every ${ms / 60_000} min`;
  if (ms % 1_000 === 0) return `every ${ms / 1_000} s`;
  return `every ${ms} ms`;
}
