import net from "node:net";
import type { AcmeProfile } from "./acme-profile-schema.ts";
import { sanProblem } from "./decide.ts";
import { dnsNameProblem, ipInRanges, ipRangeList, ipv4MappedAddress, matchesSuffix } from "./names.ts";
import type { Profile } from "./profile-schema.ts";

export interface Identifier {
  type: string;
  value: string;
}

export interface IdentifierProblem {
  identifier: Identifier;
  /** ACME error type the refusal maps to. */
  type: "rejectedIdentifier" | "unsupportedIdentifier" | "malformed";
  detail: string;
}

export const MAX_IDENTIFIERS = 100;

/**
 * What an ACME directory serves: identifiers must pass the directory's own
 * list and the certificate profile it issues from. Returns the identifiers
 * normalised (lower-case names, canonical IPs, no duplicates) and a problem
 * for each refused one.
 */
export function checkIdentifiers(
  acme: AcmeProfile,
  profile: Profile,
  identifiers: Identifier[],
): { accepted: Array<{ type: "dns" | "ip"; value: string }>; problems: IdentifierProblem[] } {
  const problems: IdentifierProblem[] = [];
  const accepted = new Map<string, { type: "dns" | "ip"; value: string }>();
  const ranges = acme.identifiers.ip ? ipRangeList(acme.identifiers.ip.ranges) : undefined;
  for (const id of identifiers) {
    const problem = (type: IdentifierProblem["type"], detail: string) => problems.push({ identifier: id, type, detail });
    if (id.type === "dns") {
      const value = id.value.toLowerCase().replace(/\.$/, "");
      if (net.isIP(value)) {
        problem("malformed", `"${id.value}" is an IP address: send it as an "ip" identifier (RFC 8738)`);
        continue;
      }
      if (!acme.identifiers.dns) {
        problem("rejectedIdentifier", `ACME directory ${acme.name} does not issue for DNS names`);
        continue;
      }
      const syntax = dnsNameProblem(value, acme.identifiers.dns.wildcards);
      if (syntax) {
        problem(syntax.includes("not a valid") ? "malformed" : "rejectedIdentifier", syntax);
        continue;
      }
      if (!matchesSuffix(value, acme.identifiers.dns.suffixes)) {
        problem("rejectedIdentifier", `"${value}" is not a name this CA serves (${acme.identifiers.dns.suffixes.join(", ")})`);
        continue;
      }
      const refused = sanProblem(profile, { type: "dns", value });
      if (refused) problem("rejectedIdentifier", refused);
      else accepted.set(`dns:${value}`, { type: "dns", value });
    } else if (id.type === "ip") {
      const family = net.isIP(id.value);
      if (!family) {
        problem("malformed", `"${id.value}" is not an IP address`);
        continue;
      }
      const value = canonicalIp(id.value, family);
      if (!ranges || !ipInRanges(value, ranges)) {
        problem("rejectedIdentifier", `IP address ${value} is not one this CA serves`);
        continue;
      }
      const refused = sanProblem(profile, { type: "ip", value });
      if (refused) problem("rejectedIdentifier", refused);
      else accepted.set(`ip:${value}`, { type: "ip", value });
    } else {
      problem("unsupportedIdentifier", `identifier type "${id.type}" is not supported; use "dns" or "ip"`);
    }
  }
  return { accepted: [...accepted.values()], problems };
}

/**
 * RFC 5952 for IPv6 (Node's URL parser normalises it; an IPv4-mapped one as
 * ::ffff:10.0.0.1, as its §5 recommends and as policy writes it), dotted
 * quad for IPv4.
 */
export function canonicalIp(ip: string, family = net.isIP(ip)): string {
  if (family === 6) {
    const mapped = ipv4MappedAddress(ip);
    return mapped ? `::ffff:${mapped}` : new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  }
  return ip.split(".").map((o) => String(Number(o))).join(".");
}
