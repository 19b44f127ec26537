import type net from "node:net";
import postgres, { type Options, type Sql, type TransactionSql } from "postgres";
import { routeConnections } from "./postgres-hosts.ts";

/**
 * A postgres.js pool whose queries cannot hang.
 *
 * When the network path to PostgreSQL turns into a black hole (packets
 * dropped, no reset), nothing on the server can help: a statement timeout is
 * never enforced for a query the server never received, and TCP keepalive
 * only probes idle connections (and is answered by any proxy in between).
 * So the bound is kept here, on the client:
 *
 * - every query the pool runs for drizzle, and every transaction's BEGIN and
 *   COMMIT, is watched from the moment it is asked;
 * - once it has waited answerTimeoutMs, the pool asks whether the database
 *   is there at all: has any connection received something since the query
 *   was asked (a busy database, answering others), or does a `select 1` on
 *   a connection of its own (the probe) answer within answerTimeoutMs? If
 *   so, the query is slow, not lost, and may go on until the server's own
 *   statement timeout (plus a grace for its cancellation to come back);
 * - if not, or past that limit, the caller gets DATABASE_NO_ANSWER (a 503
 *   database-unavailable) and every connection that has received nothing
 *   since that query was asked has its socket destroyed; postgres.js then
 *   opens new connections for the queries that follow, so the pool heals by
 *   itself when the path returns, without waiting for anything to be reset.
 *
 * So a black hole is answered within about twice answerTimeoutMs, while a
 * single long statement on a healthy database (a big CRL stored, say) is
 * never mistaken for one.
 *
 * postgres.js cannot cancel a query on a silent connection (its cancel opens
 * another connection through the same black hole) nor tell which connection
 * carries a query, but it lets us make the sockets: we keep them and watch
 * how many bytes each has received. Idle connections dropped with the silent
 * ones cost one reconnect each. Making the sockets is also how a URL naming
 * a primary and its standbys reaches whichever accepts writes, and finds
 * the new one after a failover (postgres-hosts.ts).
 *
 * A statement still in flight when it is given up may yet have been
 * executed (an INSERT committed): the caller hears "failed", never
 * "done" for something that was not done.
 */
export interface PoolOptions {
  /**
   * How long a query waits before the pool checks that the database is
   * there; the probe gets as long again. 0: no bound (one-shot commands).
   */
  answerTimeoutMs: number;
  /** The server's statement_timeout: how long a query may run on a database that answers. */
  statementTimeoutMs: number;
  max: number;
}

/** Beyond the server's statement timeout: time for its cancellation to come back. */
const GRACE_MS = 1_000;
/** A transaction whose client vanished releases its locks (advisory locks included) after this, on the server. */
const IDLE_IN_TRANSACTION_MS = 60_000;
/** TCP keepalive on idle connections: a peer that is gone for good is noticed by the kernel. */
const KEEPALIVE_S = 10;
/** Reconnection backoff cap: once the path returns, the pool is usable within about this. */
const MAX_BACKOFF_S = 1;
/** How often a query found slow-but-alive is looked at again. */
const RECHECK_MS = 1_000;

export class DatabaseNoAnswerError extends Error {
  readonly code = "DATABASE_NO_ANSWER";
}

export interface BoundedPool {
  /** The pool for drizzle: unsafe() (drizzle's queries) and begin() are bounded. */
  sql: Sql;
  ping(): Promise<void>;
  end(): Promise<void>;
}

export function openPool(url: string, options: PoolOptions): BoundedPool {
  const bounded = options.answerTimeoutMs > 0;
  const sockets = new SocketWatch();
  const probeSockets = new SocketWatch();
  const connectTimeoutS = bounded ? Math.max(1, Math.ceil(options.answerTimeoutMs / 1000)) : 5;
  const connectionOptions = {
    onnotice: () => {},
    // The array types postgres.js fetches on a new connection (none of ours is an array) come from a query whose
    // failure nobody can catch (a connection lost as it starts, in a failover): an unhandled rejection ends the process.
    fetch_types: false,
    connect_timeout: connectTimeoutS,
    keep_alive: KEEPALIVE_S,
    backoff: (retries: number) => Math.min(0.05 * 2 ** retries, MAX_BACKOFF_S) * (0.5 + Math.random() / 2),
    connection: bounded
      ? { statement_timeout: options.statementTimeoutMs, idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_MS }
      : {},
  };
  // The sockets are ours (see postgres-hosts.ts: which host, when the URL names several): we watch what each receives.
  const routed = (watch: SocketWatch) => routeConnections(url, { connectTimeoutMs: connectTimeoutS * 1000, keepAliveS: KEEPALIVE_S, onConnected: (s) => watch.add(s) });
  const pool = routed(sockets);
  const raw = postgres(pool.url, { ...connectionOptions, ...pool.options, max: options.max } as Options<Record<string, never>>);
  // The probe has a connection of its own: a pool full of slow queries must not hide a database that answers.
  const probeRoute = bounded ? routed(probeSockets) : undefined;
  const probeSql = probeRoute ? postgres(probeRoute.url, { ...connectionOptions, ...probeRoute.options, max: 1 } as Options<Record<string, never>>) : undefined;
  const probe = probeSql ? new LivenessProbe(probeSql, probeSockets, options.answerTimeoutMs) : undefined;
  const limitMs = options.statementTimeoutMs + GRACE_MS;
  const deadline: Deadline | undefined = probe
    ? {
        watch(giveUp) {
          const since = sockets.observe();
          let timer: NodeJS.Timeout | undefined;
          let done = false;
          const check = async () => {
            const slowButAlive = Date.now() - since < limitMs && (sockets.heardSince(since) || (await probe.alive()));
            if (done) return;
            if (slowButAlive) {
              timer = setTimeout(() => void check(), RECHECK_MS);
              return;
            }
            const waited = Date.now() - since;
            sockets.dropSilentSince(since, new DatabaseNoAnswerError(`no answer from the database in ${waited} ms: connection dropped`));
            giveUp(new DatabaseNoAnswerError(`no answer from the database in ${waited} ms`));
          };
          timer = setTimeout(() => void check(), options.answerTimeoutMs);
          return () => {
            done = true;
            clearTimeout(timer);
          };
        },
      }
    : undefined;
  const sql = deadline ? boundedSql(raw, deadline) : raw;
  return {
    sql,
    ping: async () => {
      await sql.unsafe("select 1");
    },
    end: async () => {
      await Promise.all([raw.end({ timeout: 5 }), probeSql?.end({ timeout: 1 })]);
      // postgres.js ends a connection politely (a Terminate message); one that is stuck never finishes.
      sockets.destroyAll();
      probeSockets.destroyAll();
    },
  };
}

/**
 * `select 1` on the probe's own connection, bounded: one at a time, its
 * answer shared by every query asking meanwhile. A probe without an answer
 * destroys its connection, so the next one starts on a fresh one.
 */
class LivenessProbe {
  private running: Promise<boolean> | undefined;

  constructor(
    private readonly sql: Sql,
    private readonly sockets: SocketWatch,
    private readonly timeoutMs: number,
  ) {}

  alive(): Promise<boolean> {
    this.running ??= this.run().finally(() => (this.running = undefined));
    return this.running;
  }

  private async run(): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), this.timeoutMs)));
    const answer = this.sql.unsafe("select 1").then(
      () => true,
      () => false,
    );
    const alive = await Promise.race([answer, timeout]);
    clearTimeout(timer);
    if (!alive) this.sockets.destroyAll();
    return alive;
  }
}

interface Deadline {
  /**
   * From now on: gives up (drops the connections that stayed silent, then
   * calls giveUp with the caller's error) once the database looks gone, or
   * the statement has overrun the server's own timeout. Returns the cancel,
   * for when the answer came.
   */
  watch(giveUp: (err: Error) => void): () => void;
}

/** The sockets of the pool and when each last received a byte, as far as has been looked. */
class SocketWatch {
  private readonly seen = new Map<net.Socket, { bytesRead: number; changedAt: number }>();

  add(socket: net.Socket): void {
    this.seen.set(socket, { bytesRead: 0, changedAt: Date.now() });
  }

  /**
   * Looks at every socket now; returns now. bytesRead counts the wire, so
   * this holds under TLS too (postgres.js wraps our socket, and removes our
   * listeners from it, hence no "close" listener: closed sockets go here).
   */
  observe(): number {
    const now = Date.now();
    for (const [socket, s] of this.seen) {
      if (socket.destroyed) this.seen.delete(socket);
      else if (socket.bytesRead !== s.bytesRead) {
        s.bytesRead = socket.bytesRead;
        s.changedAt = now;
      }
    }
    return now;
  }

  /** Has any connection received something since then? */
  heardSince(since: number): boolean {
    this.observe();
    for (const s of this.seen.values()) if (s.changedAt > since) return true;
    return false;
  }

  dropSilentSince(since: number, err: Error): void {
    this.observe();
    for (const [socket, s] of this.seen) if (s.changedAt <= since) socket.destroy(err);
  }

  destroyAll(): void {
    for (const socket of this.seen.keys()) socket.destroy();
  }
}

/** Runs the query against the deadline: the caller hears in bounded time whatever happens to it. */
function withDeadline<T>(deadline: Deadline, run: () => PromiseLike<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const cancel = deadline.watch(reject);
    run().then(
      (v) => (cancel(), resolve(v)),
      (e) => (cancel(), reject(e)),
    );
  });
}

/** What drizzle does with a query from unsafe(): await it, or ask for .values() first. */
function boundedQuery(deadline: Deadline, query: PromiseLike<unknown> & { values(): unknown }, guard?: TransactionGuard) {
  let result: Promise<unknown> | undefined;
  const run = () => (result ??= guard ? guard.statement(() => withDeadline(deadline, () => query)) : withDeadline(deadline, () => query));
  const bounded = {
    values() {
      query.values();
      return bounded;
    },
    then: <A, B>(ok?: (v: unknown) => A | PromiseLike<A>, fail?: (e: unknown) => B | PromiseLike<B>) => run().then(ok, fail),
    catch: <B>(fail?: (e: unknown) => B | PromiseLike<B>) => run().catch(fail),
    finally: (f?: () => void) => run().finally(f),
  };
  return bounded;
}

/** The pool (or a transaction's connection) with drizzle's entry points bounded. */
function boundedSql<S extends Sql | TransactionSql>(sql: S, deadline: Deadline, guard?: TransactionGuard): S {
  return new Proxy(sql, {
    get(target, prop) {
      if (prop === "unsafe") {
        return (query: string, params?: never[], opts?: never) => {
          // Not even handed to postgres.js: it would write it on the connection that is gone (see TransactionGuard).
          if (guard?.lost) return guard.never();
          return boundedQuery(deadline, target.unsafe(query, params, opts), guard);
        };
      }
      if (prop === "begin") return (...args: unknown[]) => boundedBegin(target as Sql, deadline, args);
      if (prop === "savepoint") {
        return (fn: (tx: TransactionSql) => unknown) => {
          if (guard?.lost) return guard.never();
          return (target as TransactionSql).savepoint((tx) => guard!.callback(() => fn(boundedSql(tx, deadline, guard))) as never);
        };
      }
      return Reflect.get(target, prop);
    },
  });
}

/**
 * Codes that mean a transaction's connection is gone (closed, reset,
 * destroyed, given up on, or ended by the server shutting down), unlike
 * errors after which the connection lives on (a constraint violated, the
 * statement timeout, a read-only server), where postgres.js's ROLLBACK
 * is needed and safe.
 */
const CONNECTION_LOST = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_DESTROYED",
  "CONNECTION_ENDED",
  "CONNECT_TIMEOUT",
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "DATABASE_NO_ANSWER",
  "NO_WRITABLE_HOST",
  "57P01",
  "57P02",
  "57P03",
  "08003",
  "08006",
]);

function isConnectionLost(err: unknown): boolean {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (typeof e.code === "string" && CONNECTION_LOST.has(e.code)) return true;
  }
  return false;
}

/**
 * Keeps postgres.js (3.4) from writing on a transaction's connection once
 * it has closed: it would schedule the write, then read the socket it has
 * since dropped, a TypeError thrown from a timer that ends the process
 * (porsager/postgres#1208, #1154; a failover or any crash of the server
 * under load does it). After a statement fails because the connection is
 * gone, postgres.js's begin() sends ROLLBACK itself when the callback
 * throws (ROLLBACK TO for a savepoint), COMMIT when it returns.
 *
 * So once the connection is lost, the caller is told at once (the server
 * rolled the transaction back when the connection ended), and the callback
 * is left waiting for ever: the failed statement never settles for it, a
 * later statement is never handed to postgres.js, and whatever it returns
 * or throws never reaches postgres.js. Nothing in a transaction callback
 * relies on a `finally` to put memory right (what it changes in memory, it
 * changes after its statements); an abandoned callback is collected with
 * its promises.
 */
class TransactionGuard {
  lost: Error | undefined;

  constructor(private readonly tellCaller: (err: Error) => void) {}

  lose(err: Error): void {
    if (this.lost) return;
    this.lost = err;
    this.tellCaller(err);
  }

  never(): Promise<never> {
    return new Promise<never>(() => {});
  }

  /** A statement: its failure reaches the callback, unless the connection is gone. */
  async statement<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      if (isConnectionLost(err)) this.lose(err as Error);
      if (this.lost) return this.never();
      throw err;
    }
  }

  /** The callback of a transaction or savepoint: what it returns or throws goes back to postgres.js only while the connection lives. */
  async callback<T>(fn: () => T | Promise<T>): Promise<T> {
    try {
      const result = await fn();
      if (this.lost) return this.never();
      return result;
    } catch (err) {
      if (this.lost) return this.never();
      throw err;
    }
  }
}

/**
 * A transaction: its statements are bounded one by one (the callback gets a
 * bounded connection); BEGIN (with the wait for a connection) and COMMIT or
 * ROLLBACK, which postgres.js sends itself, have a deadline each. A callback
 * whose BEGIN came back only after the caller was told it failed does nothing.
 * A connection lost on the way ends the transaction for its caller at once
 * (TransactionGuard).
 */
function boundedBegin(sql: Sql, deadline: Deadline, args: unknown[]): Promise<unknown> {
  const fn = args.pop() as (tx: TransactionSql) => unknown;
  const mode = (args[0] as string | undefined) ?? "";
  let cancel = () => {};
  let givenUp = false;
  let fail!: (err: Error) => void;
  const overrun = new Promise<never>((_, reject) => (fail = reject));
  const guard = new TransactionGuard((err) => fail(err));
  const arm = () => {
    cancel = deadline.watch((err) => {
      givenUp = true;
      fail(err);
    });
  };
  arm();
  const transaction = sql.begin(mode, async (tx) => {
    cancel();
    if (givenUp) throw new DatabaseNoAnswerError("the transaction started after its caller gave up");
    try {
      return await guard.callback(() => fn(boundedSql(tx, deadline, guard)));
    } finally {
      arm();
    }
  });
  // postgres.js rejects begin() when the transaction's connection closes, even between two statements: none is sent after.
  transaction.catch((err: unknown) => isConnectionLost(err) && guard.lose(err as Error));
  return Promise.race([transaction, overrun]).finally(() => cancel());
}
