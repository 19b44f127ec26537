import net from "node:net";
import { AsnConvert } from "@peculiar/asn1-schema";
import { NameConstraints, id_ce_nameConstraints } from "@peculiar/asn1-x509";
import type * as x509 from "@peculiar/x509";
import { nameText, type NameText } from "./names.ts";
import type { Violation } from "./lint-failure.ts";

/**
 * RFC 5280 §4.2.1.10 for the names a new certificate carries, against the
 * name constraints of every CA above it (its issuer up to the root): a name
 * of a type a side lists must match one of the permitted subtrees of that
 * type and none of the excluded ones. Types a CA does not constrain are free.
 */

interface Subtrees {
  dns: string[];
  email: string[];
  uri: string[];
  ip: net.BlockList | undefined;
  ipCount: number;
}

interface Constraints {
  subject: string;
  permitted: Subtrees;
  excluded: Subtrees;
}

const cache = new WeakMap<x509.X509Certificate, Constraints | null>();

function constraintsOf(ca: x509.X509Certificate): Constraints | null {
  let c = cache.get(ca);
  if (c === undefined) {
    const ext = ca.extensions.find((e) => e.type === id_ce_nameConstraints);
    c = ext ? parse(ca.subject, AsnConvert.parse(ext.value, NameConstraints)) : null;
    cache.set(ca, c);
  }
  return c;
}

function parse(subject: string, nc: NameConstraints): Constraints {
  const side = (list: NameConstraints["permittedSubtrees"]): Subtrees => {
    const s: Subtrees = { dns: [], email: [], uri: [], ip: undefined, ipCount: 0 };
    for (const sub of list ?? []) {
      const n = nameText(sub.base);
      if (n.type === "dns") s.dns.push(n.value.toLowerCase());
      else if (n.type === "email") s.email.push(n.value.toLowerCase());
      else if (n.type === "url") s.uri.push(n.value.toLowerCase());
      else if (n.type === "ip") {
        const [address, prefix] = n.value.split("/");
        s.ip ??= new net.BlockList();
        s.ip.addSubnet(address!, Number(prefix), net.isIPv6(address!) ? "ipv6" : "ipv4");
        s.ipCount++;
      }
    }
    return s;
  };
  return { subject, permitted: side(nc.permittedSubtrees), excluded: side(nc.excludedSubtrees) };
}

/** "a.b.example.com" is within "example.com" and ".example.com"; "example.com" only within the former. */
function dnsWithin(name: string, base: string): boolean {
  if (base === "") return true;
  if (base.startsWith(".")) return name.endsWith(base);
  return name === base || name.endsWith("." + base);
}

function hostWithin(host: string, base: string): boolean {
  return base.startsWith(".") ? host.endsWith(base) : host === base;
}

function emailWithin(mailbox: string, base: string): boolean {
  if (base.includes("@")) return mailbox === base;
  const host = mailbox.slice(mailbox.lastIndexOf("@") + 1);
  return hostWithin(host, base);
}

function matches(n: NameText, s: Subtrees): boolean | undefined {
  const v = n.value.toLowerCase();
  switch (n.type) {
    case "dns":
      return s.dns.length ? s.dns.some((b) => dnsWithin(v.replace(/^\*\./, "x."), b)) : undefined;
    case "email":
      return s.email.length ? s.email.some((b) => emailWithin(v, b)) : undefined;
    case "url": {
      if (!s.uri.length) return undefined;
      let host = "";
      try {
        host = new URL(v).hostname;
      } catch {
        // an unparsable URI matches no constraint
      }
      return s.uri.some((b) => hostWithin(host, b));
    }
    case "ip":
      return s.ip ? net.isIP(n.value) !== 0 && s.ip.check(n.value, net.isIPv6(n.value) ? "ipv6" : "ipv4") : undefined;
    default:
      return undefined;
  }
}

export function checkNameConstraints(names: NameText[], chain: x509.X509Certificate[], out: Violation[]): void {
  for (const ca of chain) {
    const c = constraintsOf(ca);
    if (!c) continue;
    for (const n of names) {
      if (matches(n, c.excluded) === true) out.push({ rule: "name-constraints", detail: `${n.type} name ${JSON.stringify(n.value)} is excluded by the name constraints of ${c.subject}` });
      else if (matches(n, c.permitted) === false) out.push({ rule: "name-constraints", detail: `${n.type} name ${JSON.stringify(n.value)} is outside the permitted names of ${c.subject}` });
    }
  }
}
