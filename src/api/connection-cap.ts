import fs from "node:fs";
import type net from "node:net";

/**
 * How many connections each listener keeps open at most. Every connection
 * is a file descriptor; when a client opens so many that the process runs
 * out, nothing works any more: not the database, not the HSM, not health
 * checks. So each listener (HTTPS and plain HTTP, each with its own share,
 * so that one full listener leaves the other's /readyz answering) accepts
 * at most half of the descriptor limit left after a reserve for everything
 * else (database, token files, logs, the control socket). Connections
 * beyond it are closed as soon as they are accepted (node's
 * server.maxConnections).
 */

/** Descriptors kept for the rest of the process: a tenth of the limit, and at least 256. */
export function descriptorReserve(limit: number): number {
  return Math.max(256, Math.ceil(limit / 10));
}

/** Per listener, for a process whose descriptor (soft) limit is `limit`. */
export function connectionCapFor(limit: number): number {
  return Math.max(1, Math.floor((limit - descriptorReserve(limit)) / 2));
}

/**
 * The soft limit on open files (RLIMIT_NOFILE) of this process, which Node
 * raises to the hard limit when it starts; undefined where /proc does not
 * say (not Linux).
 */
export function descriptorLimit(limitsFile = "/proc/self/limits"): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(limitsFile, "utf8");
  } catch {
    return undefined;
  }
  const soft = /^Max open files\s+(\d+|unlimited)\s/m.exec(text)?.[1];
  return soft && soft !== "unlimited" ? Number(soft) : undefined;
}

/** The setting (HSM_CA_MAX_CONNECTIONS) when given, else derived from the descriptor limit; undefined: no cap known. */
export function connectionCap(configured: number | undefined, limit = descriptorLimit()): number | undefined {
  if (configured !== undefined) return configured;
  return limit === undefined ? undefined : connectionCapFor(limit);
}

/** How often at most a full listener is reported. */
const FULL_REPORT_MS = 60_000;

/** Sets the cap on a listener; `onFull` hears of connections refused for it, once a minute at most. */
export function capConnections(server: net.Server, cap: number | undefined, onFull: (refused: number) => void): void {
  if (cap === undefined) return;
  server.maxConnections = cap;
  let refused = 0;
  let reported = 0;
  // node accepts and at once closes a connection beyond maxConnections, and says so with "drop".
  server.on("drop", () => {
    refused++;
    if (Date.now() - reported < FULL_REPORT_MS) return;
    reported = Date.now();
    onFull(refused);
    refused = 0;
  });
}
