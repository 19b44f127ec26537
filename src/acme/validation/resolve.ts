import { Resolver } from "node:dns/promises";
import { ValidationFailure } from "./common.ts";
import type { ValidationConfig } from "./types.ts";

/**
 * A resolver for one validation. Every query goes to cfg.resolvers (the CA's
 * chosen DNS servers, not whatever the host's getaddrinfo would use, and no
 * /etc/hosts), or to the system's configured servers when the list is empty.
 * Pending queries are cancelled when the validation's signal fires.
 */
export function makeResolver(cfg: ValidationConfig, signal: AbortSignal): Resolver {
  const resolver = new Resolver({ timeout: Math.max(100, Math.min(cfg.timeoutMs, 3000)), tries: 2 });
  if (cfg.resolvers.length > 0) resolver.setServers(cfg.resolvers);
  signal.addEventListener("abort", () => resolver.cancel(), { once: true });
  return resolver;
}

/** Maps a node:dns error to an ACME "dns" problem that says what went wrong. */
export function dnsFailure(err: unknown, rrtype: string, name: string): ValidationFailure {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const what = `${rrtype} for ${name}`;
  switch (code) {
    case "ENOTFOUND":
      return new ValidationFailure("dns", `NXDOMAIN looking up ${what}`);
    case "ENODATA":
      return new ValidationFailure("dns", `No ${rrtype} records found for ${name}`);
    case "ESERVFAIL":
      return new ValidationFailure("dns", `SERVFAIL looking up ${what}`);
    case "EREFUSED":
      return new ValidationFailure("dns", `DNS server refused the query for ${what}`);
    case "ETIMEOUT":
    case "ECANCELLED": // cancelled by makeResolver when the validation timed out
      return new ValidationFailure("dns", `DNS query timed out looking up ${what}`);
    default:
      return new ValidationFailure("dns", `DNS problem looking up ${what}: ${code ?? String(err)}`);
  }
}

/**
 * The address to connect to for a name: its first A record, or its first
 * AAAA record when it has no A records (the brief's "prefer IPv4"; we do not
 * retry the other family when a connection fails).
 */
export async function resolveAddress(resolver: Resolver, name: string): Promise<{ address: string; family: 4 | 6 }> {
  try {
    const a = await resolver.resolve4(name);
    if (a[0]) return { address: a[0], family: 4 };
  } catch (err) {
    // Only "no A records" falls through to AAAA; NXDOMAIN, SERVFAIL and
    // timeouts would only repeat for AAAA.
    if ((err as NodeJS.ErrnoException).code !== "ENODATA") throw dnsFailure(err, "A", name);
  }
  try {
    const aaaa = await resolver.resolve6(name);
    if (aaaa[0]) return { address: aaaa[0], family: 6 };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENODATA") throw dnsFailure(err, "AAAA", name);
  }
  throw new ValidationFailure("dns", `No A or AAAA records found for ${name}`);
}
