import os from "node:os";
import { ipBytes } from "./common.ts";

/**
 * Where the CA itself answers. An http-01 request never goes there: a
 * challenge server could otherwise redirect the validator to the CA's own
 * listeners (its plain-HTTP port, admin endpoints) and make the CA request
 * them on the applicant's behalf. The validator learns these through its
 * configuration (the composition root fills them in), never by asking the
 * HTTP layer.
 */
export interface OwnEndpoints {
  /**
   * The CA's listening sockets as bound (server.address(): "0.0.0.0" or "::"
   * for every address). Filled in as each listener starts, which is after
   * the ACME routes are built; read at each validation.
   */
  listeners: Array<{ address: string; port: number }>;
  /** The CA's public base URLs (HSM_CA_PUBLIC_URL, HSM_CA_PUBLIC_HTTP_URL): a proxy in front may resolve elsewhere. */
  urls: string[];
}

/** The port a URL connects to: its own, or its scheme's default. */
export function effectivePort(url: URL): number {
  if (url.port) return Number(url.port);
  return url.protocol === "https:" ? 443 : 80;
}

/**
 * Why fetching `url` at `address` (the address it resolved to, or its IP
 * literal) would reach the CA itself; undefined when it would not.
 */
export function ownEndpoint(own: OwnEndpoints, url: URL, address: string): string | undefined {
  const port = effectivePort(url);
  const host = url.hostname.toLowerCase();
  for (const base of own.urls) {
    const pub = new URL(base);
    if (pub.hostname.toLowerCase() === host && effectivePort(pub) === port) return `the CA's public URL ${pub.origin}`;
  }
  const target = addressBytes(address);
  if (!target) return undefined;
  for (const l of own.listeners) {
    const bound = addressBytes(l.address);
    if (l.port === port && bound && reaches(target, bound)) {
      return `the CA's own listener ${l.address.includes(":") ? `[${l.address}]` : l.address}:${l.port}`;
    }
  }
  return undefined;
}

/** Whether a connection to `target` lands on a socket bound to `bound` (same port assumed). */
function reaches(target: Buffer, bound: Buffer): boolean {
  if (target.equals(bound)) return true;
  // Connecting to 0.0.0.0 or :: reaches this host; a socket bound to them answers on every local address.
  if (isUnspecified(target)) return true;
  return isUnspecified(bound) && isLocal(target);
}

/** An address's bytes, IPv4-mapped IPv6 as the 4 IPv4 bytes (::ffff:127.0.0.1 is 127.0.0.1). */
function addressBytes(address: string): Buffer | undefined {
  const bytes = ipBytes(address.replace(/^\[|\]$/g, "").replace(/%.*$/, ""));
  if (bytes?.length === 16 && bytes.subarray(0, 12).equals(V4_MAPPED_PREFIX)) return bytes.subarray(12);
  return bytes;
}

const V4_MAPPED_PREFIX = Buffer.from("00000000000000000000ffff", "hex");

function isUnspecified(b: Buffer): boolean {
  return b.every((x) => x === 0);
}

/** Loopback (127/8, ::1) or an address of one of this host's interfaces. */
function isLocal(b: Buffer): boolean {
  if (b.length === 4 && b[0] === 127) return true;
  if (b.length === 16 && b.subarray(0, 15).every((x) => x === 0) && b[15] === 1) return true;
  return Object.values(os.networkInterfaces())
    .flat()
    .some((i) => i !== undefined && addressBytes(i.address)?.equals(b) === true);
}
