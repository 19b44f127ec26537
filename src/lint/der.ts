/**
 * The gate's own strict DER reader: one element at a time, definite
 * lengths in their shortest form, nothing past the end. Not src/asn1's
 * reader on purpose: the gate must not share the code it checks. Hand
 * written because @peculiar/asn1-schema, the library decoder, costs about
 * 0.45 ms per leaf certificate (docs/lint.md), more than the rest of the
 * issuance path it guards; this reads one in a few microseconds.
 */

export class DerError extends Error {
  constructor(
    /** "der-decode": not DER at all; "der-canonical": decodable, but not the one DER form. */
    readonly rule: "der-decode" | "der-canonical",
    message: string,
  ) {
    super(message);
  }
}

export const TAGS = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** One element: its tag, its content, and the whole encoding. */
export interface Element {
  tag: number;
  /** The content octets. */
  content: Uint8Array;
  /** Tag, length and content. */
  der: Uint8Array;
}

/** Reads the elements of `bytes` in order; `what` names the structure in errors. */
export class DerReader {
  private at = 0;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly what: string,
  ) {}

  get done(): boolean {
    return this.at >= this.bytes.length;
  }

  peekTag(): number | undefined {
    return this.done ? undefined : this.bytes[this.at];
  }

  next(expectedTag?: number): Element {
    const b = this.bytes;
    const start = this.at;
    if (start + 2 > b.length) throw new DerError("der-decode", `${this.what}: an element is cut short`);
    const tag = b[start]!;
    if ((tag & 0x1f) === 0x1f) throw new DerError("der-decode", `${this.what}: a multi-octet tag, which nothing hsm-ca signs has`);
    if (expectedTag !== undefined && tag !== expectedTag) {
      throw new DerError("der-decode", `${this.what}: tag 0x${hex(tag)} where 0x${hex(expectedTag)} belongs`);
    }
    let length = b[start + 1]!;
    let header = 2;
    if (length === 0x80) throw new DerError("der-canonical", `${this.what}: an indefinite length (BER, not DER)`);
    if (length > 0x80) {
      const n = length & 0x7f;
      if (n > 4 || start + 2 + n > b.length) throw new DerError("der-decode", `${this.what}: a length of ${n} octets`);
      if (b[start + 2] === 0) throw new DerError("der-canonical", `${this.what}: a length with a leading zero octet`);
      length = 0;
      for (let i = 0; i < n; i++) length = length * 256 + b[start + 2 + i]!;
      if (length < 0x80) throw new DerError("der-canonical", `${this.what}: a long-form length for ${length} octets`);
      header = 2 + n;
    }
    const end = start + header + length;
    if (end > b.length) throw new DerError("der-decode", `${this.what}: an element runs past its container`);
    this.at = end;
    return { tag, content: b.subarray(start + header, end), der: b.subarray(start, end) };
  }

  /** The next element when it has `tag`, else undefined (an absent OPTIONAL). */
  optional(tag: number): Element | undefined {
    return this.peekTag() === tag ? this.next(tag) : undefined;
  }

  end(): void {
    if (!this.done) throw new DerError("der-decode", `${this.what}: ${this.bytes.length - this.at} octets after its last element`);
  }
}

/** The elements inside a constructed element, each read strictly. */
export function children(e: Element, what: string): Element[] {
  const r = new DerReader(e.content, what);
  const out: Element[] = [];
  while (!r.done) out.push(r.next());
  return out;
}

export function readOid(e: Element, what: string): string {
  if (e.tag !== TAGS.OID || e.content.length === 0) throw new DerError("der-decode", `${what}: not an OBJECT IDENTIFIER`);
  const c = e.content;
  const arcs: number[] = [];
  let v = 0;
  for (let i = 0; i < c.length; i++) {
    if (v === 0 && c[i] === 0x80) throw new DerError("der-canonical", `${what}: an OID arc with a leading 0x80`);
    v = v * 128 + (c[i]! & 0x7f);
    if (!(c[i]! & 0x80)) {
      arcs.push(v);
      v = 0;
    } else if (i === c.length - 1) throw new DerError("der-decode", `${what}: an OID cut short`);
  }
  const first = arcs[0]!;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...arcs.slice(1)].join(".");
}

/** DER BOOLEAN: 0x00 or 0xFF, nothing else. */
export function readBoolean(e: Element, what: string): boolean {
  if (e.tag !== TAGS.BOOLEAN || e.content.length !== 1) throw new DerError("der-decode", `${what}: not a BOOLEAN`);
  if (e.content[0] === 0xff) return true;
  if (e.content[0] === 0) return false;
  throw new DerError("der-canonical", `${what}: a BOOLEAN of 0x${hex(e.content[0]!)} (DER allows 0x00 and 0xFF)`);
}

/** A small non-negative INTEGER (a version, a path length), in its shortest form. */
export function readSmallInteger(e: Element, what: string): number {
  const c = e.content;
  if (e.tag !== TAGS.INTEGER || c.length === 0 || c.length > 4) throw new DerError("der-decode", `${what}: not a small INTEGER`);
  if (c.length > 1 && ((c[0] === 0 && !(c[1]! & 0x80)) || (c[0] === 0xff && c[1]! & 0x80))) throw new DerError("der-canonical", `${what}: an INTEGER not in its shortest form`);
  if (c[0]! & 0x80) throw new DerError("der-decode", `${what}: a negative INTEGER`);
  let v = 0;
  for (const b of c) v = v * 256 + b;
  return v;
}

/** A BIT STRING as its bits (bit 0 first), its unused bits zero as DER wants them. */
export function readBits(e: Element, what: string): boolean[] {
  const c = e.content;
  if (e.tag !== TAGS.BIT_STRING || c.length === 0 || c[0]! > 7 || (c.length === 1 && c[0] !== 0)) throw new DerError("der-decode", `${what}: not a BIT STRING`);
  const unused = c[0]!;
  if (c.length > 1 && c[c.length - 1]! & ((1 << unused) - 1)) throw new DerError("der-canonical", `${what}: unused bits that are not zero`);
  const bits: boolean[] = [];
  for (let i = 1; i < c.length; i++) for (let j = 7; j >= 0; j--) bits.push(((c[i]! >> j) & 1) === 1);
  bits.length -= unused;
  return bits;
}

/** The text of a directory string or IA5String (UTF8String, PrintableString, IA5String, others as Latin-1). */
export function readString(e: Element): string {
  return e.tag === TAGS.UTF8_STRING ? Buffer.from(e.content).toString("utf8") : Buffer.from(e.content).toString("latin1");
}

/** An RFC 5280 Time: which kind it is and its instant; undefined when it is neither kind in its DER form (YYMMDDHHMMSSZ, YYYYMMDDHHMMSSZ). */
export function readTime(e: Element): { utcTime?: Date; generalTime?: Date } | undefined {
  const text = Buffer.from(e.content).toString("latin1");
  if (e.tag === TAGS.UTC_TIME && /^\d{12}Z$/.test(text)) {
    const yy = Number(text.slice(0, 2));
    return { utcTime: instant((yy < 50 ? 2000 : 1900) + yy, text.slice(2)) };
  }
  if (e.tag === TAGS.GENERALIZED_TIME && /^\d{14}Z$/.test(text)) return { generalTime: instant(Number(text.slice(0, 4)), text.slice(4)) };
  return undefined;
}

function instant(year: number, rest: string): Date {
  const n = (i: number) => Number(rest.slice(i, i + 2));
  const d = new Date(Date.UTC(year, n(0) - 1, n(2), n(4), n(6), n(8)));
  // 20261331... would roll over into the next year: not a time.
  return d.getUTCMonth() === n(0) - 1 && d.getUTCDate() === n(2) && d.getUTCHours() === n(4) && d.getUTCMinutes() === n(6) && d.getUTCSeconds() === n(8) ? d : new Date(NaN);
}

function hex(n: number): string {
  return n.toString(16).padStart(2, "0");
}
