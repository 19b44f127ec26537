import net from "node:net";
import { domainToASCII } from "node:url";
import type { GeneralName } from "@peculiar/asn1-x509";
import type { Violation } from "./lint-failure.ts";

/** A GeneralName as text, the way templates write SANs ("dns", "ip", "email", "url", or the other kinds by name). */
export interface NameText {
  type: string;
  value: string;
}

export function nameText(g: GeneralName): NameText {
  if (g.dNSName !== undefined) return { type: "dns", value: g.dNSName };
  if (g.iPAddress !== undefined) return { type: "ip", value: g.iPAddress };
  if (g.rfc822Name !== undefined) return { type: "email", value: g.rfc822Name };
  if (g.uniformResourceIdentifier !== undefined) return { type: "url", value: g.uniformResourceIdentifier };
  if (g.directoryName !== undefined) return { type: "directoryName", value: "(a directory name)" };
  if (g.registeredID !== undefined) return { type: "registeredID", value: g.registeredID };
  if (g.otherName !== undefined) return { type: "otherName", value: g.otherName.typeId };
  return { type: "other", value: "" };
}

/**
 * A DNS name as RFC 5280 §4.2.1.6 and IDNA 2008 (as node's URL parser
 * applies it) allow in a certificate: ASCII, already in A-label form (what
 * domainToASCII gives back unchanged), labels of 1 to 63 letters, digits and
 * hyphens, no hyphen first or last, at most 253 characters, no trailing
 * dot; "*" only as the whole first label.
 */
export function dnsNameProblem(name: string): string | undefined {
  if (name.length === 0) return "an empty DNS name";
  if (name.length > 253) return `DNS name of ${name.length} characters (at most 253)`;
  if (!/^[\x21-\x7e]+$/.test(name)) return `DNS name ${JSON.stringify(name)} is not printable ASCII`;
  const labels = name.split(".");
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i]!;
    if (label === "*" && i === 0 && labels.length > 2) continue;
    if (label.length === 0) return `DNS name ${JSON.stringify(name)} has an empty label`;
    if (label.length > 63) return `DNS name ${JSON.stringify(name)} has a label longer than 63 characters`;
    if (!/^[a-zA-Z0-9-]+$/.test(label)) return `DNS name ${JSON.stringify(name)}: label ${JSON.stringify(label)} is not letters, digits and hyphens${label.includes("*") ? " (a wildcard is only the whole first label)" : ""}`;
    if (label.startsWith("-") || label.endsWith("-")) return `DNS name ${JSON.stringify(name)}: label ${JSON.stringify(label)} starts or ends with a hyphen`;
  }
  const bare = name.startsWith("*.") ? name.slice(2) : name;
  // An A-label (xn--) that is not valid Punycode, or a name IDNA would rewrite, comes back different or empty.
  if (domainToASCII(bare) !== bare.toLowerCase()) return `DNS name ${JSON.stringify(name)} is not a valid IDNA A-label name`;
  return undefined;
}

/** The problem with one SAN, if any: empty, malformed for its type, or a kind no profile issues. */
export function sanProblem(n: NameText): Violation | undefined {
  switch (n.type) {
    case "dns": {
      const p = dnsNameProblem(n.value);
      return p ? { rule: n.value === "" ? "san-empty" : "dns-name", detail: p } : undefined;
    }
    case "ip":
      return net.isIP(n.value) ? undefined : { rule: "ip-address", detail: `iPAddress ${JSON.stringify(n.value)} is not 4 or 16 octets` };
    case "email": {
      if (n.value === "") return { rule: "san-empty", detail: "an empty rfc822Name" };
      const at = n.value.lastIndexOf("@");
      const domainProblem = at > 0 ? dnsNameProblem(n.value.slice(at + 1)) : "no @";
      return domainProblem ? { rule: "email-address", detail: `rfc822Name ${JSON.stringify(n.value)}: ${domainProblem}` } : undefined;
    }
    case "url": {
      if (n.value === "") return { rule: "san-empty", detail: "an empty uniformResourceIdentifier" };
      try {
        const u = new URL(n.value);
        if (!u.host && u.protocol !== "urn:") return { rule: "uri", detail: `URI ${JSON.stringify(n.value)} has no host` };
      } catch {
        return { rule: "uri", detail: `URI ${JSON.stringify(n.value)} does not parse` };
      }
      return undefined;
    }
    default:
      return { rule: "san-type", detail: `a ${n.type} SAN, which hsm-ca never issues` };
  }
}

/** The CN a leaf profile may put there only when it is one of the SANs: a DNS name or IP address. */
export function looksLikeHostName(cn: string): boolean {
  return net.isIP(cn) !== 0 || /^(\*\.)?([a-z0-9-]+\.)*[a-z0-9-]+$/i.test(cn);
}
