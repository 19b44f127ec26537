import type * as x509 from "@peculiar/x509";
import { DerError } from "../asn1/der-error.ts";
import { readChildren, readOid, readTlv, type Tlv } from "../asn1/der-reader.ts";
import { TAG } from "../asn1/tags.ts";
import { directoryString, DistinguishedName, latin1 } from "./distinguished-name.ts";

/**
 * A name asked for in a SAN. "other" stands for the kinds x509.JsonGeneralName
 * has no type for (x400Address, ediPartyName, otherNames but UPN and GUID):
 * no profile allows them, but a request for one is refused, not ignored.
 */
export type RequestedName = x509.JsonGeneralName | { type: "other"; value: string };

/**
 * GeneralNames (RFC 5280 §4.2.1.6) read straight from DER, as the
 * x509.JsonGeneralName values @peculiar/x509's SubjectAlternativeNameExtension
 * gives, text for text; where x509 silently dropped a name, an "other".
 */
export function readGeneralNames(buf: Uint8Array, t: Tlv): RequestedName[] {
  if (t.tag !== TAG.SEQUENCE) throw new DerError(`expected GeneralNames at offset ${t.start}`);
  return readChildren(buf, t).map((name) => readGeneralName(buf, name));
}

/** Context tags of the GeneralName CHOICE: primitive for IMPLICIT strings, constructed otherwise. */
const NAME_TAG = {
  OTHER_NAME: 0xa0,
  RFC822: 0x81,
  DNS: 0x82,
  X400_ADDRESS: 0xa3,
  DIRECTORY: 0xa4,
  EDI_PARTY_NAME: 0xa5,
  URI: 0x86,
  IP: 0x87,
  REGISTERED_ID: 0x88,
} as const;

const OTHER_NAME = {
  upn: "1.3.6.1.4.1.311.20.2.3",
  guid: "1.3.6.1.4.1.311.25.1",
} as const;

function readGeneralName(buf: Uint8Array, t: Tlv): RequestedName {
  switch (t.tag) {
    case NAME_TAG.DNS:
      return { type: "dns", value: latin1(buf.subarray(t.contentStart, t.end)) };
    case NAME_TAG.RFC822:
      return { type: "email", value: latin1(buf.subarray(t.contentStart, t.end)) };
    case NAME_TAG.URI:
      return { type: "url", value: latin1(buf.subarray(t.contentStart, t.end)) };
    case NAME_TAG.IP:
      return { type: "ip", value: ipText(buf.subarray(t.contentStart, t.end)) };
    case NAME_TAG.REGISTERED_ID:
      return { type: "id", value: readOid(buf, { ...t, tag: TAG.OID }) };
    case NAME_TAG.DIRECTORY: {
      const [name, ...rest] = readChildren(buf, t);
      if (!name || rest.length) throw new DerError(`malformed directoryName at offset ${t.start}`);
      return { type: "dn", value: DistinguishedName.read(buf, name).toString() };
    }
    case NAME_TAG.OTHER_NAME:
      return readOtherName(buf, t);
    case NAME_TAG.X400_ADDRESS:
      return { type: "other", value: "x400Address" };
    case NAME_TAG.EDI_PARTY_NAME:
      return { type: "other", value: "ediPartyName" };
    default:
      throw new DerError(`GeneralName with tag 0x${t.tag.toString(16)} is not supported`);
  }
}

/** OtherName ::= SEQUENCE { type-id OID, value [0] EXPLICIT ANY }, IMPLICIT [0]. */
function readOtherName(buf: Uint8Array, t: Tlv): RequestedName {
  const [typeId, wrapper, ...rest] = readChildren(buf, t);
  if (!typeId || !wrapper || rest.length || wrapper.tag !== 0xa0) throw new DerError(`malformed otherName at offset ${t.start}`);
  const value = readTlv(buf, wrapper.contentStart, wrapper.end);
  if (value.end !== wrapper.end) throw new DerError(`malformed otherName at offset ${t.start}`);
  const oid = readOid(buf, typeId);
  const content = buf.subarray(value.contentStart, value.end);
  const upn = oid === OTHER_NAME.upn ? directoryString(value.tag, content) : undefined;
  if (upn !== undefined) return { type: "upn", value: upn };
  if (oid === OTHER_NAME.guid && value.tag === TAG.OCTET_STRING && content.length === 16) {
    // Microsoft's GUID layout: the first three groups are little-endian.
    const hex = (from: number, to: number, reverse: boolean) => {
      const part = Buffer.from(content.subarray(from, to));
      return (reverse ? part.reverse() : part).toString("hex");
    };
    return { type: "guid", value: [hex(0, 4, true), hex(4, 6, true), hex(6, 8, true), hex(8, 10, false), hex(10, 16, false)].join("-") };
  }
  return { type: "other", value: `otherName ${oid}` };
}

/**
 * An iPAddress as text, as @peculiar/asn1-x509's IpConverter writes it:
 * dotted quad, RFC 5952-style IPv6 (lower case, longest run of two or more
 * zero groups as "::", the first on a tie), address/prefix for the 8- and
 * 32-byte name-constraint forms, hex for any other length.
 */
export function ipText(bytes: Uint8Array): string {
  switch (bytes.length) {
    case 4:
      return bytes.join(".");
    case 16:
      return ipv6Text(bytes);
    case 8:
    case 32: {
      if (bytes.every((b) => b === 0)) return bytes.length === 8 ? "0.0.0.0/0" : "::/0";
      const half = bytes.length / 2;
      let prefix = 0;
      for (const b of bytes.subarray(half)) for (let v = b; v; v >>= 1) prefix += v & 1;
      const address = half === 4 ? bytes.subarray(0, 4).join(".") : ipv6Text(bytes.subarray(0, 16));
      return `${address}/${prefix}`;
    }
    default:
      return Buffer.from(bytes).toString("hex");
  }
}

function ipv6Text(bytes: Uint8Array): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j;
  }
  if (bestLength < 2) return groups.join(":");
  return `${groups.slice(0, bestStart).join(":")}::${groups.slice(bestStart + bestLength).join(":")}`;
}
