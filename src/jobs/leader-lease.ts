import type { Logger } from "pino";
import type { SessionLock } from "../store/session-lock.ts";

/**
 * Who runs the leader jobs: one replica at a time. The lease is told
 * whenever this replica starts or stops leading.
 */
export interface LeaderLease {
  /** This process's name among the replicas (hostname:pid). */
  readonly replica: string;
  readonly leading: boolean;
  /** Tries to take the lease once (so a first replica leads from its start), then keeps at it in the background. */
  start(onChange: (leading: boolean) => void): Promise<void>;
  /** The replica that leads, as far as can be told (undefined: none right now, or the database does not answer). */
  leader(): Promise<string | undefined>;
  /** Gives the lease up: another replica takes over within one retry interval. */
  close(): Promise<void>;
}

/** The embedded database serves one process, which therefore always leads. */
export function soleLeader(replica: string): LeaderLease {
  return {
    replica,
    leading: true,
    start: async (onChange) => onChange(true),
    leader: async () => replica,
    close: async () => {},
  };
}

/**
 * How often a follower tries to take the lease, and how often the leader
 * checks that its connection still holds it. After the leader dies, another
 * replica leads within about this (the server releases the lock as soon as
 * it sees the connection end).
 */
export const LEASE_INTERVAL_MS = 2_000;

/**
 * The lease on PostgreSQL: a session-level advisory lock held on a
 * connection of its own for as long as this replica leads. Followers try
 * pg_try_advisory_lock every LEASE_INTERVAL_MS. A leader whose check fails
 * or finds the lock gone (its connection was lost and replaced) stops
 * leading at once and closes that connection, so that the server frees the
 * lock if it still held it; it then competes again like any follower.
 */
export class PostgresLeaderLease implements LeaderLease {
  private lock?: SessionLock;
  private timer?: NodeJS.Timeout;
  private checking?: Promise<void>;
  private onChange: (leading: boolean) => void = () => {};
  private unreachable = false;
  private closed = false;
  leading = false;

  constructor(
    readonly replica: string,
    private readonly open: () => SessionLock,
    private readonly log: Logger,
    private readonly intervalMs = LEASE_INTERVAL_MS,
  ) {}

  async start(onChange: (leading: boolean) => void): Promise<void> {
    this.onChange = onChange;
    await this.check();
    this.timer = setInterval(() => void this.check(), this.intervalMs);
    this.timer.unref();
  }

  async leader(): Promise<string | undefined> {
    if (this.leading) return this.replica;
    try {
      this.lock ??= this.open();
      return await this.lock.holder();
    } catch {
      return undefined;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.checking;
    await this.lock?.close();
    this.lock = undefined;
    this.set(false, "stopping");
  }

  private check(): Promise<void> {
    this.checking ??= this.attempt().finally(() => (this.checking = undefined));
    return this.checking;
  }

  private async attempt(): Promise<void> {
    if (this.closed) return;
    try {
      this.lock ??= this.open();
      if (this.leading) {
        if (!(await this.lock.holds())) await this.lose("the lease's connection no longer holds the lock");
      } else if (await this.lock.tryLock()) {
        this.set(true);
      }
      if (this.unreachable) this.log.info("the jobs lease can reach the database again");
      this.unreachable = false;
    } catch (err) {
      const message = (err as Error).message;
      if (this.leading) await this.lose(`cannot check the lease: ${message}`);
      else {
        if (!this.unreachable) this.log.warn({ err: message }, "cannot reach the database for the jobs lease; retrying");
        await this.lock?.close();
        this.lock = undefined;
      }
      this.unreachable = true;
    }
  }

  /** Stops leading, and ends the connection so that a lock the server still holds for it is released. */
  private async lose(why: string): Promise<void> {
    this.set(false, why);
    await this.lock?.close();
    this.lock = undefined;
  }

  private set(leading: boolean, why?: string): void {
    if (leading === this.leading) return;
    this.leading = leading;
    if (leading) this.log.info({ replica: this.replica }, "this replica now leads the background jobs");
    else if (why !== "stopping") this.log.warn({ replica: this.replica, why }, "this replica no longer leads the background jobs");
    this.onChange(leading);
  }
}
