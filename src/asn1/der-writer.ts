/**
 * The DER writer for structures we assemble by hand: CRLs with a million
 * entries (where an object per ASN.1 node would cost too much), leaf
 * certificates and OCSP responses. docs/benchmarks.md ("CRL build time and
 * peak memory": 1,000,000 entries built and signed in about half a second)
 * is why these are not @peculiar/asn1-schema objects.
 *
 * Two styles: small helpers that return a fresh Uint8Array per TLV, for
 * headers and extensions; and size/write pairs (`timeLength`/`writeTime`,
 * `writeHeader`, ...) that write straight into a caller's Buffer, for loops.
 */
import { DerError } from "./der-error.ts";
import { TAG } from "./tags.ts";

// ---------------------------------------------------------------------------
// Lengths and headers

/** Bytes the DER length field takes for a content of `len` bytes. */
export function lengthSize(len: number): number {
  if (!Number.isInteger(len) || len < 0 || len > 0xffffffff) throw new DerError(`bad DER length ${len}`);
  if (len < 0x80) return 1;
  if (len <= 0xff) return 2;
  if (len <= 0xffff) return 3;
  if (len <= 0xffffff) return 4;
  return 5;
}

/** Bytes a TLV with a one-byte tag and `contentLength` bytes of content takes. */
export function tlvSize(contentLength: number): number {
  return 1 + lengthSize(contentLength) + contentLength;
}

/** Writes the DER length of `len` at `off`; returns the offset after it. */
export function writeLength(buf: Uint8Array, off: number, len: number): number {
  const n = lengthSize(len);
  if (n === 1) {
    buf[off] = len;
    return off + 1;
  }
  buf[off++] = 0x80 | (n - 1);
  for (let shift = (n - 2) * 8; shift >= 0; shift -= 8) buf[off++] = Math.floor(len / 2 ** shift) & 0xff;
  return off;
}

/** Writes a one-byte tag and the length of `contentLength`; returns the offset of the content. */
export function writeHeader(buf: Uint8Array, off: number, tag: number, contentLength: number): number {
  buf[off] = tag;
  return writeLength(buf, off + 1, contentLength);
}

/** The DER length field on its own. */
export function encodeLength(len: number): Uint8Array {
  const out = new Uint8Array(lengthSize(len));
  writeLength(out, 0, len);
  return out;
}

// ---------------------------------------------------------------------------
// Whole TLVs

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** tag + length + the concatenated parts. */
export function tlv(tag: number, ...content: Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of content) len += p.length;
  const out = new Uint8Array(tlvSize(len));
  let off = writeHeader(out, 0, tag, len);
  for (const p of content) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

export function sequence(...parts: Uint8Array[]): Uint8Array {
  return tlv(TAG.SEQUENCE, ...parts);
}

/**
 * A context-specific tag [n]. `constructed` for EXPLICIT tags and for
 * IMPLICIT tags over constructed types (SEQUENCE OF, CHOICE...); primitive
 * for IMPLICIT tags over OCTET STRING, BOOLEAN, IA5String and the like.
 */
export function contextTag(n: number, constructed: boolean, ...content: Uint8Array[]): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 30) throw new DerError(`context tag [${n}] needs the high-tag-number form`);
  return tlv(0x80 | (constructed ? 0x20 : 0) | n, ...content);
}

export function octetString(content: Uint8Array): Uint8Array {
  return tlv(TAG.OCTET_STRING, content);
}

export function boolean(value: boolean): Uint8Array {
  return Uint8Array.of(TAG.BOOLEAN, 1, value ? 0xff : 0x00);
}

export const NULL = Uint8Array.of(TAG.NULL, 0);

/** An IA5String (ASCII); throws on anything else. */
export function ia5String(s: string): Uint8Array {
  if (!/^[\x00-\x7f]*$/.test(s)) throw new DerError(`not an IA5String (ASCII): ${JSON.stringify(s)}`);
  return tlv(TAG.IA5_STRING, Buffer.from(s, "latin1"));
}

/** An OBJECT IDENTIFIER from dotted form, e.g. "2.5.29.20". */
export function oid(dotted: string): Uint8Array {
  if (!/^[0-2](\.(0|[1-9][0-9]*))+$/.test(dotted)) throw new DerError(`not an OID: "${dotted}"`);
  const arcs = dotted.split(".").map((a) => BigInt(a));
  const [a0, a1] = [arcs[0]!, arcs[1]!];
  if (a0 < 2n && a1 > 39n) throw new DerError(`not an OID: "${dotted}" (second arc above 39)`);
  const bytes: number[] = [];
  for (const arc of [a0 * 40n + a1, ...arcs.slice(2)]) {
    const group: number[] = [Number(arc & 0x7fn)];
    for (let v = arc >> 7n; v > 0n; v >>= 7n) group.unshift(Number(v & 0x7fn) | 0x80);
    bytes.push(...group);
  }
  return tlv(TAG.OID, Uint8Array.from(bytes));
}

// ---------------------------------------------------------------------------
// INTEGER and ENUMERATED

/** Hex digit values by UTF-16 code unit; 255 for anything else. */
const HEX = (() => {
  const t = new Uint8Array(0x10000).fill(255);
  for (let i = 0; i < 10; i++) t[0x30 + i] = i;
  for (let i = 0; i < 6; i++) t[0x41 + i] = t[0x61 + i] = 10 + i;
  return t;
})();

/**
 * A non-negative hex number in minimal form: even length, no leading zero
 * byte ("00" for zero). Returns the input itself when it already is (the
 * common case: no allocation). Digits are checked when written.
 */
export function minimalHex(hex: string): string {
  const len = hex.length;
  if ((len & 1) === 0 && len > 0 && hex.charCodeAt(0) !== 0x30) return hex;
  if (!/^[0-9a-fA-F]+$/.test(hex)) throw new DerError(`not a hex number: ${JSON.stringify(hex)}`);
  let h = hex.replace(/^0+/, "");
  if (h === "") return "00";
  if (h.length & 1) h = "0" + h;
  return h;
}

/** Content bytes of the INTEGER for a minimalHex number: a 00 byte goes before a high bit. */
export function hexIntegerContentLength(hex: string): number {
  return (hex.length >> 1) + (HEX[hex.charCodeAt(0)]! >= 8 ? 1 : 0);
}

/** Writes the INTEGER TLV for a minimalHex number at `off`; returns the offset after it. */
export function writeHexInteger(buf: Uint8Array, off: number, hex: string): number {
  const n = hex.length >> 1;
  const pad = HEX[hex.charCodeAt(0)]! >= 8;
  off = writeHeader(buf, off, TAG.INTEGER, n + (pad ? 1 : 0));
  if (pad) buf[off++] = 0;
  for (let i = 0; i < hex.length; i += 2) {
    const hi = HEX[hex.charCodeAt(i)]!;
    const lo = HEX[hex.charCodeAt(i + 1)]!;
    if ((hi | lo) > 15) throw new DerError(`not a hex number: ${JSON.stringify(hex)}`);
    buf[off++] = (hi << 4) | lo;
  }
  return off;
}

/** A non-negative INTEGER from hex (a certificate serial number, say). */
export function integerFromHex(hex: string): Uint8Array {
  const h = minimalHex(hex);
  const out = new Uint8Array(tlvSize(hexIntegerContentLength(h)));
  writeHexInteger(out, 0, h);
  return out;
}

/** A non-negative INTEGER from a bigint (CRL numbers). */
export function integerFromBigInt(n: bigint): Uint8Array {
  if (n < 0n) throw new DerError(`negative INTEGER ${n} is not supported`);
  return integerFromHex(n.toString(16));
}

/** An ENUMERATED with a small non-negative value (CRL reason codes). */
export function enumerated(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff) throw new DerError(`ENUMERATED ${n} out of range`);
  const int = integerFromHex(n.toString(16));
  int[0] = TAG.ENUMERATED;
  return int;
}

// ---------------------------------------------------------------------------
// Time (RFC 5280 §4.1.2.5, §5.1.2.4): UTCTime YYMMDDHHMMSSZ for 1950-2049,
// GeneralizedTime YYYYMMDDHHMMSSZ otherwise; always Zulu, whole seconds
// (milliseconds are dropped).

const UTC_TIME_FROM = Date.UTC(1950, 0, 1);
const UTC_TIME_UNTIL = Date.UTC(2050, 0, 1);
// Date.UTC maps years 0-99 to 1900-1999, so setUTCFullYear.
const GENERALIZED_FROM = new Date(0).setUTCFullYear(0, 0, 1);
const GENERALIZED_UNTIL = new Date(0).setUTCFullYear(10000, 0, 1);

function checkedTime(date: Date): number {
  const t = date instanceof Date ? date.getTime() : NaN;
  if (Number.isNaN(t)) throw new DerError(`not a valid date: ${String(date)}`);
  if (t < GENERALIZED_FROM || t >= GENERALIZED_UNTIL) throw new DerError(`date ${date.toISOString()} is outside years 0000-9999`);
  return t;
}

/** Whether RFC 5280 wants UTCTime (true) or GeneralizedTime (false) for this date. */
export function isUtcTimeYear(date: Date): boolean {
  const t = checkedTime(date);
  return t >= UTC_TIME_FROM && t < UTC_TIME_UNTIL;
}

/** Bytes of the Time TLV for `date`: 15 for UTCTime, 17 for GeneralizedTime. */
export function timeLength(date: Date): number {
  return isUtcTimeYear(date) ? 15 : 17;
}

/** Writes the RFC 5280 Time for `date` at `off`; returns the offset after it. */
export function writeTime(buf: Uint8Array, off: number, date: Date): number {
  return writeTimeAs(buf, off, date, !isUtcTimeYear(date));
}

/** Writes a GeneralizedTime (whatever the year) at `off`; returns the offset after it. */
export function writeGeneralizedTime(buf: Uint8Array, off: number, date: Date): number {
  checkedTime(date);
  return writeTimeAs(buf, off, date, true);
}

function writeTimeAs(buf: Uint8Array, off: number, date: Date, generalized: boolean): number {
  const year = date.getUTCFullYear();
  if (generalized) {
    buf[off++] = TAG.GENERALIZED_TIME;
    buf[off++] = 15;
    off = two(buf, off, Math.floor(year / 100));
  } else {
    buf[off++] = TAG.UTC_TIME;
    buf[off++] = 13;
  }
  off = two(buf, off, year % 100);
  off = two(buf, off, date.getUTCMonth() + 1);
  off = two(buf, off, date.getUTCDate());
  off = two(buf, off, date.getUTCHours());
  off = two(buf, off, date.getUTCMinutes());
  off = two(buf, off, date.getUTCSeconds());
  buf[off++] = 0x5a; // Z
  return off;
}

function two(buf: Uint8Array, off: number, v: number): number {
  buf[off] = 0x30 + Math.floor(v / 10);
  buf[off + 1] = 0x30 + (v % 10);
  return off + 2;
}

/** RFC 5280 Time: UTCTime for 1950-2049, else GeneralizedTime. */
export function time(date: Date): Uint8Array {
  const out = new Uint8Array(timeLength(date));
  writeTime(out, 0, date);
  return out;
}

/** GeneralizedTime whatever the year (e.g. invalidityDate). */
export function generalizedTime(date: Date): Uint8Array {
  const out = new Uint8Array(17);
  writeGeneralizedTime(out, 0, date);
  return out;
}
