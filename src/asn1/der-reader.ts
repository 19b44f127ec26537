/**
 * The one DER reader: walks bytes in place, a TLV at a time, and refuses
 * what DER forbids (indefinite and non-minimal lengths, content overrunning
 * its parent). Used wherever DER is read by hand because it is read on a hot
 * path: CSRs (every issuance), OCSP requests (every OCSP answer), and the
 * fields of certificates the CA signs with.
 */
import { DerError } from "./der-error.ts";
import { TAG } from "./tags.ts";

export interface Tlv {
  tag: number;
  /** Offset of the tag byte. */
  start: number;
  /** Offset of the content. */
  contentStart: number;
  /** Offset after the content. */
  end: number;
}

/** The TLV at `off`, within `limit` (single-byte tags, definite minimal lengths up to 4 length bytes). */
export function readTlv(buf: Uint8Array, off: number, limit = buf.length): Tlv {
  if (off + 2 > limit) throw new DerError(`truncated DER at offset ${off}`);
  const tag = buf[off]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError(`high-tag-number form at offset ${off} is not supported`);
  let p = off + 1;
  const first = buf[p++]!;
  let len: number;
  if (first < 0x80) len = first;
  else {
    const n = first & 0x7f;
    if (n === 0) throw new DerError(`unsupported indefinite length at offset ${off} (BER, not DER)`);
    if (n > 4) throw new DerError(`unsupported DER length of ${n} bytes at offset ${off}`);
    if (p + n > limit) throw new DerError(`truncated DER at offset ${off}`);
    // Minimal: no leading zero byte, and the long form only from 128 on.
    if (buf[p] === 0) throw new DerError(`non-minimal DER length at offset ${off}`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p++]!;
    if (len < 0x80) throw new DerError(`non-minimal DER length at offset ${off}`);
  }
  if (p + len > limit) throw new DerError(`DER content overruns its parent at offset ${off}`);
  return { tag, start: off, contentStart: p, end: p + len };
}

/** The TLVs that exactly fill a constructed TLV's content. */
export function readChildren(buf: Uint8Array, parent: Tlv): Tlv[] {
  if (!(parent.tag & 0x20)) throw new DerError(`expected a constructed type at offset ${parent.start}`);
  const out: Tlv[] = [];
  for (let off = parent.contentStart; off < parent.end; ) {
    const child = readTlv(buf, off, parent.end);
    out.push(child);
    off = child.end;
  }
  return out;
}

/** A TLV's content octets, as a view of `buf` (a Buffer gives a Buffer). */
export function contentOf<T extends Uint8Array>(buf: T, t: Tlv): T {
  return buf.subarray(t.contentStart, t.end) as T;
}

/** Throws a DerError naming `what` unless `t` is there with tag `tag`. */
export function expectTag(t: Tlv | undefined, tag: number, what: string): asserts t is Tlv {
  if (!t) throw new DerError(`${what} is missing`);
  if (t.tag !== tag) throw new DerError(`${what}: expected tag 0x${tag.toString(16)}, found 0x${t.tag.toString(16)}`);
}

/** An INTEGER's content (two's complement), refusing the empty and non-minimal encodings DER forbids. */
export function integerContent<T extends Uint8Array>(buf: T, t: Tlv): T {
  const b = contentOf(buf, t);
  if (b.length === 0) throw new DerError(`empty INTEGER at offset ${t.start}`);
  if (b.length > 1 && ((b[0] === 0x00 && !(b[1]! & 0x80)) || (b[0] === 0xff && b[1]! & 0x80))) {
    throw new DerError(`INTEGER not minimally encoded at offset ${t.start}`);
  }
  return b;
}

/** The dotted form of the OBJECT IDENTIFIER at `t` (minimal base-128 arcs, as DER requires). */
export function readOid(buf: Uint8Array, t: Tlv): string {
  if (t.tag !== TAG.OID) throw new DerError(`expected an OBJECT IDENTIFIER at offset ${t.start}`);
  if (t.end === t.contentStart) throw new DerError(`empty OBJECT IDENTIFIER at offset ${t.start}`);
  let out = "";
  let arc = 0;
  let big: bigint | undefined; // arcs past 2^53 are legal, if rare (UUID OIDs under 2.25)
  for (let p = t.contentStart; p < t.end; p++) {
    const b = buf[p]!;
    if (b === 0x80 && (p === t.contentStart || buf[p - 1]! < 0x80)) throw new DerError(`non-minimal OID arc at offset ${p}`);
    if (big === undefined && arc > 2 ** 45) big = BigInt(arc);
    if (big === undefined) arc = arc * 128 + (b & 0x7f);
    else big = (big << 7n) | BigInt(b & 0x7f);
    if (b & 0x80) continue;
    if (out === "") {
      // The first subidentifier packs two arcs: 40 * X + Y with X in 0..2.
      if (big !== undefined) out = `2.${big - 80n}`;
      else out = arc < 80 ? `${Math.floor(arc / 40)}.${arc % 40}` : `2.${arc - 80}`;
    } else out += `.${big ?? arc}`;
    arc = 0;
    big = undefined;
  }
  if (buf[t.end - 1]! & 0x80) throw new DerError(`truncated OID arc at offset ${t.start}`);
  return out;
}
