import net from "node:net";
import postgres, { type Options, type Sql, type TransactionSql } from "postgres";

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
 *   COMMIT, has a deadline: the server's own statement timeout plus a grace;
 * - past it with no answer on any connection (a busy database, answering
 *   others, gets up to PATIENCE deadlines), the caller gets
 *   DATABASE_NO_ANSWER (a 503 database-unavailable) and every connection that
 *   has received nothing since that query was asked has its socket
 *   destroyed; postgres.js then opens new connections for the queries that
 *   follow, so the pool heals by itself when the path returns, without
 *   waiting for anything to be reset.
 *
 * postgres.js cannot cancel a query on a silent connection (its cancel opens
 * another connection through the same black hole) nor tell which connection
 * carries a query, but it lets us make the sockets: we keep them and watch
 * how many bytes each has received. A connection that stayed idle through a
 * query that overran is given up too; that only happens when the server
 * failed to answer within its own statement timeout, and it costs one
 * reconnect.
 *
 * A statement still in flight when its deadline passes may yet have been
 * executed (an INSERT committed): the caller hears "failed", never
 * "done" for something that was not done.
 */
export interface PoolOptions {
  /** Statement timeout on the server; the client's deadline is this plus GRACE_MS. 0: no bound (one-shot commands). */
  queryTimeoutMs: number;
  max: number;
}

/** Beyond the server's statement timeout: time for its cancellation to come back. */
const GRACE_MS = 1_000;
/** A transaction whose client vanished releases its locks (advisory locks included) after this, on the server. */
const IDLE_IN_TRANSACTION_MS = 60_000;
/** TCP keepalive on idle connections: a peer that is gone for good is noticed by the kernel. */
const KEEPALIVE_S = 10;
/** A query on a busy database (answers coming on other connections) waits up to this many deadlines. */
const PATIENCE = 3;
/** Reconnection backoff cap: once the path returns, the pool is usable within about this. */
const MAX_BACKOFF_S = 1;

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
  const sockets = new SocketWatch();
  const deadlineMs = options.queryTimeoutMs > 0 ? options.queryTimeoutMs + GRACE_MS : 0;
  let nextHost = 0;
  const raw = postgres(url, {
    max: options.max,
    onnotice: () => {},
    connect_timeout: deadlineMs ? Math.ceil(deadlineMs / 1000) : 5,
    keep_alive: KEEPALIVE_S,
    backoff: (retries: number) => Math.min(0.05 * 2 ** retries, MAX_BACKOFF_S) * (0.5 + Math.random() / 2),
    connection: options.queryTimeoutMs > 0
      ? { statement_timeout: options.queryTimeoutMs, idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_MS }
      : {},
    socket: (o: { host: string[]; port: number[]; path?: string | false }) => {
      const i = nextHost++ % o.host.length;
      const socket = o.path ? net.connect(o.path) : net.connect(o.port[i] ?? 5432, o.host[i]!);
      // postgres.js reads these for TLS (SNI), as it does for sockets of its own.
      Object.assign(socket, { host: o.host[i], port: o.port[i] });
      socket.setKeepAlive(true, KEEPALIVE_S * 1000);
      sockets.add(socket);
      return socket;
    },
  } as Options<Record<string, never>>);
  const deadline: Deadline | undefined = deadlineMs
    ? {
        watch(giveUp) {
          const since = sockets.observe();
          let timer: NodeJS.Timeout;
          const check = () => {
            const waited = Date.now() - since;
            // Answers are coming on other connections: the database is busy, not gone (a query queued behind others).
            if (waited < deadlineMs * PATIENCE && sockets.heardSince(since)) {
              timer = setTimeout(check, Math.min(deadlineMs, 1_000));
              return;
            }
            sockets.dropSilentSince(since, new DatabaseNoAnswerError(`no answer from the database in ${waited} ms: connection dropped`));
            giveUp(new DatabaseNoAnswerError(`no answer from the database in ${waited} ms`));
          };
          timer = setTimeout(check, deadlineMs);
          return () => clearTimeout(timer);
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
      await raw.end({ timeout: 5 });
      // postgres.js ends a connection politely (a Terminate message); one that is stuck never finishes.
      sockets.destroyAll();
    },
  };
}

interface Deadline {
  /**
   * From now on: gives up (drops the connections that stayed silent, then
   * calls giveUp with the caller's error) once the deadline has passed with
   * no answer on any connection, or PATIENCE deadlines in any case. Returns
   * the cancel, for when the answer came.
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
function boundedQuery(deadline: Deadline, query: PromiseLike<unknown> & { values(): unknown }) {
  let result: Promise<unknown> | undefined;
  const run = () => (result ??= withDeadline(deadline, () => query));
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
function boundedSql<S extends Sql | TransactionSql>(sql: S, deadline: Deadline): S {
  return new Proxy(sql, {
    get(target, prop) {
      if (prop === "unsafe") return (query: string, params?: never[], opts?: never) => boundedQuery(deadline, target.unsafe(query, params, opts));
      if (prop === "begin") return (...args: unknown[]) => boundedBegin(target as Sql, deadline, args);
      if (prop === "savepoint") {
        return (fn: (tx: TransactionSql) => unknown) => (target as TransactionSql).savepoint((tx) => fn(boundedSql(tx, deadline)) as never);
      }
      return Reflect.get(target, prop);
    },
  });
}

/**
 * A transaction: its statements are bounded one by one (the callback gets a
 * bounded connection); BEGIN (with the wait for a connection) and COMMIT or
 * ROLLBACK, which postgres.js sends itself, have a deadline each. A callback
 * whose BEGIN came back only after the caller was told it failed does nothing.
 */
function boundedBegin(sql: Sql, deadline: Deadline, args: unknown[]): Promise<unknown> {
  const fn = args.pop() as (tx: TransactionSql) => unknown;
  const mode = (args[0] as string | undefined) ?? "";
  let cancel = () => {};
  let givenUp = false;
  let fail!: (err: Error) => void;
  const overrun = new Promise<never>((_, reject) => (fail = reject));
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
      return await fn(boundedSql(tx, deadline));
    } finally {
      arm();
    }
  });
  return Promise.race([transaction, overrun]).finally(() => cancel());
}
