import net from "node:net";

/**
 * Name checks shared by every front door (REST now, ACME later): one
 * engine for what a profile's SAN rules allow.
 */
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function isDnsName(name: string): boolean {
  if (name.length > 253) return false;
  return name.split(".").every((l) => LABEL.test(l));
}

/** A DNS name, lower-case, optionally with one leading "*." label. */
export function dnsNameProblem(name: string, wildcards: boolean): string | undefined {
  const bare = name.startsWith("*.") ? name.slice(2) : name;
  if (name !== name.toLowerCase()) return `DNS name "${name}" must be lower-case`;
  if (!isDnsName(bare)) return `"${name}" is not a valid DNS name`;
  if (bare !== name && !wildcards) return `wildcard name "${name}" is not allowed by this profile`;
  if (bare !== name && !bare.includes(".")) return `wildcard name "${name}" is too broad`;
  return undefined;
}

/** "test", "localhost", "*.test": one label once the wildcard is set aside. */
export function isSingleLabel(name: string): boolean {
  const bare = name.startsWith("*.") ? name.slice(2) : name;
  return !bare.includes(".");
}

/**
 * The IPv4 address inside an IPv4-mapped IPv6 address (::ffff:0:0/96, RFC
 * 4291 §2.5.5.2), in any spelling ("::ffff:10.0.0.1", "::ffff:a00:1",
 * "0:0:0:0:0:ffff:a00:1"); undefined for any other address.
 */
export function ipv4MappedAddress(ip: string): string | undefined {
  if (!net.isIPv6(ip) || ip.includes("%")) return undefined; // a zone index names a link, not an IPv4 host
  // The WHATWG URL parser writes IPv6 in one canonical (RFC 5952) form, hex groups only.
  const m = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(new URL(`http://[${ip}]/`).hostname.slice(1, -1));
  if (!m) return undefined;
  const [high, low] = [parseInt(m[1]!, 16), parseInt(m[2]!, 16)];
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join(".");
}

export function matchesSuffix(name: string, suffixes: readonly string[]): boolean {
  const bare = name.startsWith("*.") ? name.slice(2) : name;
  return suffixes.some((s) => bare === s || bare.endsWith("." + s));
}

export function ipRangeList(ranges: readonly string[]): net.BlockList {
  // Profiles are loaded once: their range lists are built once too (per request they cost as much as the rest of the policy).
  let list = rangeLists.get(ranges);
  if (list) return list;
  list = new net.BlockList();
  rangeLists.set(ranges, list);
  for (const range of ranges) {
    const [addr, prefix] = range.split("/");
    const type = net.isIPv6(addr!) ? "ipv6" : "ipv4";
    list.addSubnet(addr!, Number(prefix), type);
  }
  return list;
}

const rangeLists = new WeakMap<readonly string[], net.BlockList>();

export function ipInRanges(ip: string, list: net.BlockList): boolean {
  const family = net.isIP(ip);
  if (family === 0) return false;
  return list.check(ip, family === 6 ? "ipv6" : "ipv4");
}

/**
 * spiffe://<trust domain>/<path>, per the SPIFFE ID specification; with
 * trustDomainOnly, the trust domain's own ID spiffe://<trust domain> (no
 * path), which a CA of that trust domain carries.
 */
export function spiffeIdProblem(uri: string, trustDomains: readonly string[], opts: { trustDomainOnly?: boolean } = {}): string | undefined {
  if (opts.trustDomainOnly) {
    const td = /^spiffe:\/\/([^/?#]+)$/.exec(uri);
    if (!td) return `"${uri}" is not a trust domain's SPIFFE ID (spiffe://<trust domain>, no path): a CA names its trust domain, not a workload`;
    if (td[1] !== td[1]!.toLowerCase() || !isDnsName(td[1]!)) return `"${td[1]}" is not a valid trust domain`;
    if (!trustDomains.includes(td[1]!)) return `trust domain "${td[1]}" is not served by this profile`;
    return undefined;
  }
  const m = /^spiffe:\/\/([^/?#]+)(\/[^?#]*)$/.exec(uri);
  if (!m) return `"${uri}" is not a SPIFFE ID (spiffe://<trust domain>/<path>, no query or fragment)`;
  const [, domain, path] = m;
  if (domain !== domain!.toLowerCase() || !isDnsName(domain!)) return `"${domain}" is not a valid trust domain`;
  if (!trustDomains.includes(domain!)) return `trust domain "${domain}" is not served by this profile`;
  if (path!.split("/").slice(1).some((seg) => seg === "" || seg === "." || seg === ".." || !/^[A-Za-z0-9._-]+$/.test(seg))) {
    return `"${uri}" has an invalid path segment`;
  }
  return undefined;
}
