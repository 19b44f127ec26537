import { DerError } from "../asn1/der-error.ts";
import { readChildren, readOid, type Tlv } from "../asn1/der-reader.ts";
import { TAG } from "../asn1/tags.ts";

/**
 * An X.501 Name read straight from DER, answering the questions
 * @peculiar/x509's Name answers (getField, toString) with the same text,
 * without building an object per ASN.1 node.
 */
export class DistinguishedName {
  private constructor(
    private readonly attributes: readonly NameAttribute[],
    private readonly rdnCount: number,
  ) {}

  /** Reads the Name (SEQUENCE OF RelativeDistinguishedName) at `t`; throws DerError when it is not one. */
  static read(buf: Uint8Array, t: Tlv): DistinguishedName {
    if (t.tag !== TAG.SEQUENCE) throw new DerError(`expected a Name at offset ${t.start}`);
    const attributes: NameAttribute[] = [];
    let rdn = 0;
    for (const set of readChildren(buf, t)) {
      if (set.tag !== TAG.SET) throw new DerError(`expected a RelativeDistinguishedName at offset ${set.start}`);
      for (const atv of readChildren(buf, set)) {
        if (atv.tag !== TAG.SEQUENCE) throw new DerError(`expected an AttributeTypeAndValue at offset ${atv.start}`);
        const [type, value, ...rest] = readChildren(buf, atv);
        if (!type || !value || rest.length) throw new DerError(`malformed AttributeTypeAndValue at offset ${atv.start}`);
        attributes.push({ rdn, oid: readOid(buf, type), ...attributeValue(buf, value) });
      }
      rdn++;
    }
    return new DistinguishedName(attributes, rdn);
  }

  /**
   * Every value of one attribute, in DN order. `attr` is a short name
   * x509.Name knows (CN, O, OU, C, ST, L, DC, E, G, I, SN, T) or a dotted
   * OID; an unknown short name has no values.
   */
  field(attr: string): string[] {
    const oid = OID_OF_SHORT_NAME.get(attr) ?? (/^[0-2](\.\d+)+$/.test(attr) ? attr : undefined);
    const out: string[] = [];
    for (const a of this.attributes) if (a.oid === oid) out.push(a.text);
    return out;
  }

  /** Every attribute in DN order: its short name (or dotted OID) and its text, as field() gives it. */
  entries(): Array<{ type: string; value: string }> {
    return this.attributes.map((a) => ({ type: SHORT_NAME_OF_OID.get(a.oid) ?? a.oid, value: a.text }));
  }

  /** The RFC 4514-like string x509.Name.toString() gives: "CN=a, O=b", "+" inside a multi-valued RDN. */
  toString(): string {
    const rdns: string[][] = Array.from({ length: this.rdnCount }, () => []);
    for (const a of this.attributes) {
      rdns[a.rdn]!.push(`${SHORT_NAME_OF_OID.get(a.oid) ?? a.oid}=${a.hex !== undefined ? `#${a.hex}` : escapeValue(a.text)}`);
    }
    return rdns.map((rdn) => rdn.join("+")).join(", ");
  }
}

interface NameAttribute {
  /** Index of the RDN it belongs to, for multi-valued RDNs. */
  rdn: number;
  oid: string;
  /** What x509.Name.getField gives: the decoded string, or for a type it does not decode, the TLV in hex. */
  text: string;
  /** Set when the value is not a string type x509.Name decodes: the TLV in hex. */
  hex?: string;
}

/** The short names x509.Name uses (its `names` registry). */
const SHORT_NAMES: ReadonlyArray<readonly [string, string]> = [
  ["CN", "2.5.4.3"],
  ["L", "2.5.4.7"],
  ["ST", "2.5.4.8"],
  ["O", "2.5.4.10"],
  ["OU", "2.5.4.11"],
  ["C", "2.5.4.6"],
  ["DC", "0.9.2342.19200300.100.1.25"],
  ["E", "1.2.840.113549.1.9.1"],
  ["G", "2.5.4.42"],
  ["I", "2.5.4.43"],
  ["SN", "2.5.4.4"],
  ["T", "2.5.4.12"],
];
const OID_OF_SHORT_NAME = new Map(SHORT_NAMES);
const SHORT_NAME_OF_OID = new Map(SHORT_NAMES.map(([name, oid]) => [oid, name]));

const STRING_TAG = {
  UTF8: 0x0c,
  PRINTABLE: 0x13,
  TELETEX: 0x14,
  IA5: 0x16,
  UNIVERSAL: 0x1c,
  BMP: 0x1e,
} as const;

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Decodes an attribute value the way @peculiar/asn1-x509's AttributeValue does. */
function attributeValue(buf: Uint8Array, t: Tlv): { text: string; hex?: string } {
  const content = buf.subarray(t.contentStart, t.end);
  const text = t.tag === STRING_TAG.IA5 ? latin1(content) : directoryString(t.tag, content);
  if (text !== undefined) return { text };
  // asn1-schema turns a NULL value into null, which x509 prints as nothing.
  if (t.tag === TAG.NULL && content.length === 0) return { text: "" };
  const hex = Buffer.from(buf.buffer, buf.byteOffset + t.start, t.end - t.start).toString("hex");
  return { text: hex, hex };
}

/** A DirectoryString's text, or undefined when `tag` is none of its string types. */
export function directoryString(tag: number, content: Uint8Array): string | undefined {
  switch (tag) {
    case STRING_TAG.UTF8:
      return decodeUtf8(content);
    case STRING_TAG.PRINTABLE:
    case STRING_TAG.TELETEX: // T.61 in theory, Latin-1 in practice (and in asn1js)
      return latin1(content);
    case STRING_TAG.BMP:
      return decodeUtf16be(content);
    case STRING_TAG.UNIVERSAL:
      return decodeUtf32be(content);
    default:
      return undefined;
  }
}

export function latin1(content: Uint8Array): string {
  return Buffer.from(content.buffer, content.byteOffset, content.length).toString("latin1");
}

/** UTF-8; bytes that are not UTF-8 read as Latin-1, as asn1js does rather than failing. */
function decodeUtf8(content: Uint8Array): string {
  try {
    return utf8.decode(content);
  } catch {
    return latin1(content);
  }
}

function decodeUtf16be(content: Uint8Array): string {
  if (content.length % 2) throw new DerError("BMPString with an odd number of bytes");
  let out = "";
  for (let i = 0; i < content.length; i += 2) out += String.fromCharCode((content[i]! << 8) | content[i + 1]!);
  return out;
}

function decodeUtf32be(content: Uint8Array): string {
  if (content.length % 4) throw new DerError("UniversalString whose length is not a multiple of 4");
  let out = "";
  for (let i = 0; i < content.length; i += 4) {
    const cp = ((content[i]! << 24) | (content[i + 1]! << 16) | (content[i + 2]! << 8) | content[i + 3]!) >>> 0;
    if (cp > 0x10ffff) throw new DerError("UniversalString with a code point beyond Unicode");
    out += String.fromCodePoint(cp);
  }
  return out;
}

/** x509.Name's escaping, quirks included (only the first control character is hex-escaped). */
function escapeValue(value: string): string {
  return value
    .replace(/([,+"\\<>;])/g, "\\$1")
    .replace(/^([ #])/, "\\$1")
    .replace(/([ ]$)/, "\\$1")
    .replace(/([\r\n\t])/, (c) => `\\${Buffer.from(c, "utf8").toString("hex").toUpperCase()}`);
}

