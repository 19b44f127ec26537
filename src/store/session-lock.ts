import postgres from "postgres";
import { withTimeout } from "../with-timeout.ts";
import { routeConnections } from "./postgres-hosts.ts";

/**
 * A PostgreSQL session-level advisory lock on a connection of its own.
 * The lock lives as long as that connection: the server releases it when
 * the connection ends, however it ends (the process killed, the connection
 * lost, the host gone). So the holder must notice when its connection was
 * replaced (holds() asks the server, for this very backend), and the server
 * must notice a holder that went silent: TCP keepalives, and an idle-session
 * timeout far longer than the holder's own checks.
 */
export interface SessionLock {
  /** Takes the lock if nobody holds it (pg_try_advisory_lock); true when this connection holds it now. */
  tryLock(): Promise<boolean>;
  /** Whether this connection's backend still holds the lock (false after a reconnect). */
  holds(): Promise<boolean>;
  /** The name of whoever holds the lock in this database, if anyone does. */
  holder(): Promise<string | undefined>;
  /** Ends the connection: the server releases the lock. */
  close(): Promise<void>;
}

/** Shown as the connection's application_name, which is how another replica learns the holder's name. */
const APPLICATION_PREFIX = "hsm-ca/";
/** PostgreSQL keeps 63 bytes of an application_name. */
const APPLICATION_NAME_MAX = 63;
/**
 * The server ends a lock holder's session that has said nothing for this
 * long (PostgreSQL 14 and later): a frozen process or a vanished host
 * loses the lock within this, even with no TCP reset.
 */
const IDLE_SESSION_TIMEOUT_MS = 30_000;

export function openSessionLock(url: string, options: { lock: number; name: string; timeoutMs: number }): SessionLock {
  const { lock, timeoutMs } = options;
  const connectTimeoutS = Math.max(1, Math.ceil(timeoutMs / 1000));
  // With several hosts, to the one that accepts writes (the primary after a failover): a lock on a standby is no lock.
  const route = routeConnections(url, { connectTimeoutMs: connectTimeoutS * 1000, keepAliveS: 10 });
  const client = postgres(route.url, {
    ...route.options,
    max: 1,
    onnotice: () => {},
    // Its startup query's failure cannot be caught (see postgres-pool.ts); the lock's queries use no array type.
    fetch_types: false,
    connect_timeout: connectTimeoutS,
    keep_alive: 10,
    // postgres.js closes a connection after a random 30-60 min by default, or when idle; this one carries the lock.
    max_lifetime: null,
    idle_timeout: 0,
    connection: {
      application_name: (APPLICATION_PREFIX + options.name).slice(0, APPLICATION_NAME_MAX),
      // The server's side: a peer gone without a reset is noticed in about 25 s.
      tcp_keepalives_idle: 10,
      tcp_keepalives_interval: 5,
      tcp_keepalives_count: 3,
    },
  } as postgres.Options<Record<string, never>>);
  const bounded = <T>(p: Promise<T>) => withTimeout(p, timeoutMs);
  return {
    async tryLock() {
      const [row] = await bounded(client`select pg_try_advisory_lock(${lock}::bigint) as locked`);
      if (!row?.locked) return false;
      // Best effort: PostgreSQL 13 and older have no idle_session_timeout; keepalives still apply there.
      await bounded(client`select set_config('idle_session_timeout', ${String(IDLE_SESSION_TIMEOUT_MS)}, false)`).catch(() => {});
      return true;
    },
    async holds() {
      const [row] = await bounded(client`
        select exists (
          select 1 from pg_locks
          where locktype = 'advisory' and classid = 0 and objid::bigint = ${lock}::bigint and objsubid = 1
            and granted and pid = pg_backend_pid()
        ) as held`);
      return row?.held === true;
    },
    async holder() {
      const [row] = await bounded(client`
        select a.application_name as name
        from pg_locks l join pg_stat_activity a on a.pid = l.pid
        where l.locktype = 'advisory' and l.classid = 0 and l.objid::bigint = ${lock}::bigint and l.objsubid = 1 and l.granted
          and l.database = (select oid from pg_database where datname = current_database())`);
      const name = row?.name as string | undefined;
      return name?.startsWith(APPLICATION_PREFIX) ? name.slice(APPLICATION_PREFIX.length) : (name ?? undefined);
    },
    async close() {
      await withTimeout(client.end({ timeout: 0 }), timeoutMs).catch(() => {});
    },
  };
}
