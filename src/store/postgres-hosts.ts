import net from "node:net";
import postgres, { type Options } from "postgres";
import { withTimeout } from "../with-timeout.ts";

/**
 * Which of DATABASE_URL's hosts a new connection goes to.
 *
 * A URL may name several hosts, a primary and its standbys
 * (`postgres://u@h1:5432,h2:5432/db?target_session_attrs=read-write`), as
 * libpq's do: every connection then goes to the one that accepts writes,
 * and after a failover to the standby that was promoted. postgres.js
 * (3.4) reads such URLs, but cannot be left to do it alone:
 *
 * - its `read-write` looks at default_transaction_read_only only, which a
 *   hot standby of PostgreSQL 14 and later reports as off: it connects to
 *   the standby, and every write fails (libpq also looks at in_hot_standby);
 * - while no host is acceptable (the primary gone, the standby not yet
 *   promoted), a connection with several hosts swallows every error and
 *   reconnects at once, for ever: a thousand connections a second, the
 *   query never rejected, and a query its caller gave up on runs whenever
 *   a primary appears (a session lock taken by nobody's connection).
 *
 * So postgres.js is shown one host, and the socket it is handed is made
 * here: to the host last found to accept writes (each connection still
 * checks with target_session_attrs=primary as it starts, as a guard).
 * When that host is not known, or lost (a connection to it closed, or
 * could not be made), the next connection first looks for it: a short
 * check connection to every host at once, the first acceptable answer
 * wins. While none is, connections fail at once (a 503 to the caller,
 * who retries) instead of piling up: a failed search is not repeated for
 * SEARCH_PAUSE_MS.
 *
 * A URL with one host is left as it was (its path, for a Unix socket,
 * included); only `read-write` is made to mean what it means in libpq.
 */
export interface HostRouting {
  /** The URL for postgres.js: target_session_attrs removed (it is in `options`, as postgres.js understands it). */
  url: string;
  /** For postgres.js: the one host it sees, the socket maker, the check each connection makes as it starts. */
  options: { socket: () => Promise<net.Socket>; target_session_attrs?: "primary"; host?: string; port?: number };
}

export interface RoutingOptions {
  /** How long a TCP connection (and a host check) may take. */
  connectTimeoutMs: number;
  keepAliveS: number;
  /** Each socket that connected, before postgres.js gets it. */
  onConnected?: (socket: net.Socket) => void;
}

export interface PostgresHost {
  host: string;
  port: number;
}

/** What hsm-ca asks of the server a connection reaches: it writes, so only these make sense. */
export type SessionTarget = "any" | "primary" | "read-write";

export class DatabaseUrlError extends Error {}

/** A new connection, when no host was found to accept writes. */
export class NoWritableHostError extends Error {
  readonly code = "NO_WRITABLE_HOST";
}

/** After a search found no acceptable host, connections fail at once for this long before the next search. */
const SEARCH_PAUSE_MS = 250;
/** A connection that closed before it had been open this long tells that its host may no longer be the one. */
const SETTLED_MS = 2_000;

export function routeConnections(url: string, options: RoutingOptions): HostRouting {
  const target = sessionTargetOf(url);
  const clientUrl = withoutParameter(url, "target_session_attrs");
  // postgres.js's "primary" is libpq's (in_hot_standby); "read-write" also wants writes allowed, which the host check adds.
  const guard = target === "any" ? {} : { target_session_attrs: "primary" as const };
  const hosts = hostsOf(url);
  if (hosts.length <= 1) {
    // postgres.js passes its parsed options to `socket` (undeclared in its types).
    const socket = ((o: SocketRequest) => singleHostSocket(o, options)) as unknown as () => Promise<net.Socket>;
    return { url: clientUrl, options: { ...guard, socket } };
  }
  const finder = new WritableHostFinder(clientUrl, hosts, target, options.connectTimeoutMs);
  return {
    url: clientUrl,
    options: {
      ...guard,
      // One host for postgres.js, so that a connection that fails, fails (see above); the socket goes where finder says.
      host: hosts[0]!.host,
      port: hosts[0]!.port,
      socket: () => multiHostSocket(finder, hosts, options),
    },
  };
}

/** target_session_attrs from the URL, else PGTARGETSESSIONATTRS, as libpq reads it. */
export function sessionTargetOf(url: string): SessionTarget {
  const asked = queryOf(url).get("target_session_attrs") ?? process.env.PGTARGETSESSIONATTRS ?? "any";
  if (asked === "any" || asked === "primary" || asked === "read-write") return asked;
  throw new DatabaseUrlError(
    `DATABASE_URL: target_session_attrs=${asked} cannot serve hsm-ca, which writes: use read-write (or primary) with several hosts`,
  );
}

/**
 * The hosts of a URL, read as postgres.js reads them: `h1:p1,h2:p2`, a host
 * without a port on the first host's port (else PGPORT, else 5432).
 */
export function hostsOf(url: string): PostgresHost[] {
  let authority = url.slice(url.indexOf("://") + 3).split(/[?/]/)[0] ?? "";
  authority = decodeURIComponent(authority.slice(authority.indexOf("@") + 1));
  if (!authority) return [];
  const parts = authority.split(",");
  const defaultPort = Number(parts[0]!.split(":")[1] || process.env.PGPORT || 5432);
  return parts.map((part) => {
    const [host, port] = part.split(":");
    return { host: host!, port: port ? Number(port) : defaultPort };
  });
}

function queryOf(url: string): URLSearchParams {
  const q = url.indexOf("?");
  return new URLSearchParams(q < 0 ? "" : url.slice(q + 1).split("#")[0]);
}

function withoutParameter(url: string, name: string): string {
  const q = url.indexOf("?");
  if (q < 0) return url;
  const [query, fragment] = url.slice(q + 1).split("#");
  const kept = (query ?? "").split("&").filter((p) => p && decodeURIComponent(p.split("=")[0]!) !== name);
  return url.slice(0, q) + (kept.length ? `?${kept.join("&")}` : "") + (fragment !== undefined ? `#${fragment}` : "");
}

/** What postgres.js passes to `socket`: its parsed options. */
interface SocketRequest {
  host: string[];
  port: number[];
  path?: string | false;
}

/**
 * postgres.js starts talking on a socket it is handed at once, so it is
 * handed one that is connected already, as its own would be. One that
 * cannot connect is handed over as a socket that fails once postgres.js
 * has written its startup message to it (failingSocket).
 */
async function singleHostSocket(o: SocketRequest, options: RoutingOptions): Promise<net.Socket> {
  const to = o.path ? { path: o.path } : { host: o.host[0]!, port: o.port[0] ?? 5432 };
  try {
    return handOver(await connect(to, options), options);
  } catch (err) {
    return failingSocket(err as Error);
  }
}

async function multiHostSocket(finder: WritableHostFinder, hosts: PostgresHost[], options: RoutingOptions): Promise<net.Socket> {
  // Twice at most: the host known to accept writes may be the one that just went away; then look again.
  let lastError: Error = new NoWritableHostError("no database host accepts writes");
  for (let attempt = 0; attempt < 2; attempt++) {
    const i = await finder.writableHost();
    if (i === undefined) break;
    try {
      const socket = await connect(hosts[i]!, options);
      finder.watch(i, socket);
      return handOver(socket, options);
    } catch (err) {
      finder.lost(i);
      lastError = err as Error;
    }
  }
  return failingSocket(lastError);
}

function connect(to: PostgresHost | { path: string }, options: RoutingOptions): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = "path" in to ? net.connect(to.path) : net.connect(to.port, to.host);
    // postgres.js reads these for TLS (SNI), as it does for sockets of its own.
    if (!("path" in to)) Object.assign(socket, { host: to.host, port: to.port });
    socket.setKeepAlive(true, options.keepAliveS * 1000);
    const timer = setTimeout(
      () => socket.destroy(Object.assign(new Error(`connect timeout (${options.connectTimeoutMs} ms)`), { code: "CONNECT_TIMEOUT" })),
      options.connectTimeoutMs,
    );
    socket.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.removeAllListeners("error");
      resolve(socket);
    });
  });
}

function handOver(socket: net.Socket, options: RoutingOptions): net.Socket {
  options.onConnected?.(socket);
  return socket;
}

/**
 * A socket that fails as a refused connection does, but only once
 * postgres.js has flushed what it queued on it: postgres.js (3.4) queues
 * its startup message as soon as it has the socket, and a socket closed
 * before that write went out leaves it behind, with the write's timer, in
 * the connection: every later connection of that slot then hangs in its
 * startup, until a large write sends the lot (the server answers "invalid
 * frontend message type 0"). Failing from inside the write, after
 * postgres.js has cleared its buffer, leaves the slot clean.
 */
function failingSocket(err: Error): net.Socket {
  const dead = new net.Socket();
  const fail = () => setImmediate(() => dead.destroy(err));
  let failing = false;
  dead.write = ((_chunk: unknown, callback?: unknown) => {
    if (!failing) fail();
    failing = true;
    if (typeof callback === "function") process.nextTick(callback as () => void);
    return true;
  }) as typeof dead.write;
  // Should postgres.js never write to it (it always does), it still fails.
  setTimeout(() => !failing && ((failing = true), fail()), 1_000).unref();
  return dead;
}

/**
 * Remembers the host that accepts writes; finds it when it is not known.
 * Forgets it when a connection to it could not be made, or closed while
 * it was new (postgres.js closes one that reached a standby at once).
 */
class WritableHostFinder {
  private known: number | undefined;
  private searching: Promise<number | undefined> | undefined;
  private failedSearchAt = 0;

  constructor(
    private readonly url: string,
    private readonly hosts: PostgresHost[],
    private readonly target: SessionTarget,
    private readonly timeoutMs: number,
  ) {}

  writableHost(): Promise<number | undefined> {
    if (this.known !== undefined) return Promise.resolve(this.known);
    if (Date.now() - this.failedSearchAt < SEARCH_PAUSE_MS) return Promise.resolve(undefined);
    this.searching ??= this.search().finally(() => (this.searching = undefined));
    return this.searching;
  }

  lost(i: number): void {
    if (this.known === i) this.known = undefined;
  }

  /**
   * A connection to host i: when it closes, the host is looked for again
   * (the primary went down, or turned standby). postgres.js takes our
   * listeners off a socket it upgrades to TLS, so a new connection is also
   * looked at once it should have settled.
   */
  watch(i: number, socket: net.Socket): void {
    socket.once("close", () => this.lost(i));
    setTimeout(() => socket.destroyed && this.lost(i), SETTLED_MS).unref();
  }

  private async search(): Promise<number | undefined> {
    const checks = this.hosts.map((h, i) => this.accepts(h).then((ok) => (ok ? i : Promise.reject(new Error("not acceptable")))));
    try {
      this.known = await Promise.any(checks);
      return this.known;
    } catch {
      this.failedSearchAt = Date.now();
      return undefined;
    }
  }

  /** A check connection of its own to that host alone: is it a primary (that allows writes, for read-write)? */
  private async accepts(h: PostgresHost): Promise<boolean> {
    let socket: net.Socket | undefined;
    const client = postgres(this.url, {
      host: h.host,
      port: h.port,
      max: 1,
      onnotice: () => {},
      fetch_types: false,
      connect_timeout: Math.max(1, Math.ceil(this.timeoutMs / 1000)),
      socket: async () => {
        socket = await connect(h, { connectTimeoutMs: this.timeoutMs, keepAliveS: 10 }).catch(failingSocket);
        return socket;
      },
    } as Options<Record<string, never>>);
    try {
      const [row] = await withTimeout(
        client.unsafe("select pg_is_in_recovery() as recovery, current_setting('transaction_read_only') as read_only"),
        2 * this.timeoutMs,
      );
      if (!row || row.recovery) return this.target === "any";
      return this.target !== "read-write" || row.read_only === "off";
    } catch {
      return false;
    } finally {
      await withTimeout(client.end({ timeout: 0 }), this.timeoutMs).catch(() => {});
      socket?.destroy();
    }
  }
}
