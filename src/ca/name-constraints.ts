import net from "node:net";
import * as x509 from "@peculiar/x509";
import { contextTag, ia5String, octetString, sequence } from "../asn1/der-writer.ts";
import type { NameSubtreesTemplate } from "./sub-ca-template.ts";
import { ipAddressBytes } from "./subject-alt-name.ts";

const OID_NAME_CONSTRAINTS = "2.5.29.30";

/**
 * The nameConstraints extension (RFC 5280 §4.2.1.10), marked critical as
 * the RFC requires (OpenSSL, Go and GnuTLS all process it). @peculiar/x509
 * has no class for it, so it is written here:
 *
 *   NameConstraints ::= SEQUENCE {
 *     permittedSubtrees [0] GeneralSubtrees OPTIONAL,
 *     excludedSubtrees  [1] GeneralSubtrees OPTIONAL }
 *   GeneralSubtree ::= SEQUENCE { base GeneralName }   -- minimum 0 and no maximum: both left out
 */
export function nameConstraintsExtension(c: { permitted: NameSubtreesTemplate; excluded: NameSubtreesTemplate }): x509.Extension {
  const parts: Uint8Array[] = [];
  const permitted = subtrees(c.permitted);
  const excluded = subtrees(c.excluded);
  // GeneralSubtrees is SIZE (1..MAX): a side with nothing in it is left out.
  if (permitted.length) parts.push(contextTag(0, true, ...permitted));
  if (excluded.length) parts.push(contextTag(1, true, ...excluded));
  if (parts.length === 0) throw new Error("name constraints with no names");
  return new x509.Extension(OID_NAME_CONSTRAINTS, true, sequence(...parts) as Uint8Array<ArrayBuffer>);
}

function subtrees(s: NameSubtreesTemplate): Uint8Array[] {
  const base = (name: Uint8Array) => sequence(name);
  return [
    // GeneralName [2] dNSName and [6] uniformResourceIdentifier: IA5String, IMPLICIT.
    ...s.dns.map((d) => base(implicit(0x82, ia5String(d)))),
    ...s.uri.map((u) => base(implicit(0x86, ia5String(u)))),
    // [7] iPAddress: in a constraint, the address followed by its mask (8 or 32 octets).
    ...s.ip.map((r) => base(implicit(0x87, octetString(addressAndMask(r))))),
  ];
}

/** Retags a universal primitive TLV as the given context-specific primitive tag, keeping its content. */
function implicit(tag: number, universal: Uint8Array): Uint8Array {
  const out = Uint8Array.from(universal);
  out[0] = tag;
  return out;
}

/** "10.0.0.0/8" -> 0a000000 ff000000; host bits of the address are cleared, as the range means. */
export function addressAndMask(range: string): Uint8Array {
  const [address, prefixText] = range.split("/") as [string, string];
  const prefix = Number(prefixText);
  const family = net.isIP(address);
  const size = family === 4 ? 4 : family === 6 ? 16 : 0;
  if (size === 0 || !Number.isInteger(prefix) || prefix < 0 || prefix > size * 8) throw new Error(`not an address range: ${range}`);
  const bytes = ipAddressBytes(address);
  const mask = new Uint8Array(size);
  for (let i = 0; i < size; i++) mask[i] = 0xff << Math.max(0, 8 - Math.max(0, prefix - i * 8)) & 0xff;
  const out = new Uint8Array(size * 2);
  for (let i = 0; i < size; i++) out[i] = bytes[i]! & mask[i]!;
  out.set(mask, size);
  return out;
}
