/**
 * The few bytes the gate writes itself: a SEQUENCE or BIT STRING header
 * around bytes it was handed, so that the signed object can be given whole
 * to the independent decoders. Not src/asn1's writer on purpose: the gate
 * must not share the code it checks.
 */
export function tlv(tag: number, ...parts: Uint8Array[]): Buffer {
  const length = parts.reduce((n, p) => n + p.length, 0);
  return Buffer.concat([Buffer.from([tag]), lengthOctets(length), ...parts]);
}

function lengthOctets(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** Certificate / CertificateList / BasicOCSPResponse shape: SEQUENCE { tbs, algorithm, BIT STRING signature }. */
export function signedEnvelope(tbs: Uint8Array, algorithmIdentifier: Uint8Array, signature: Uint8Array): Buffer {
  return tlv(0x30, tbs, algorithmIdentifier, tlv(0x03, Buffer.from([0]), signature));
}

/** The signature AlgorithmIdentifier DER each CA key algorithm must put in what it signs (RFC 5758, RFC 4055). */
export const SIGNATURE_ALGORITHMS = {
  "ecdsa-p256": Buffer.from("300a06082a8648ce3d040302", "hex"),
  "ecdsa-p384": Buffer.from("300a06082a8648ce3d040303", "hex"),
  "rsa-2048": Buffer.from("300d06092a864886f70d01010b0500", "hex"),
  "rsa-3072": Buffer.from("300d06092a864886f70d01010b0500", "hex"),
  "rsa-4096": Buffer.from("300d06092a864886f70d01010b0500", "hex"),
} as const;

/** The bytes of the first element inside a DER SEQUENCE (a Certificate's tbsCertificate). */
export function firstElement(der: Uint8Array): Uint8Array {
  const inner = headerLength(der, 0);
  const start = inner.header;
  const element = headerLength(der, start);
  return der.subarray(start, start + element.header + element.length);
}

function headerLength(der: Uint8Array, at: number): { header: number; length: number } {
  const first = der[at + 1]!;
  if (first < 0x80) return { header: 2, length: first };
  const n = first & 0x7f;
  let length = 0;
  for (let i = 0; i < n; i++) length = length * 256 + der[at + 2 + i]!;
  return { header: 2 + n, length };
}

/** An INTEGER TLV's value, sign and content length (for numbers larger than a JS number holds). */
export function integerContent(buffer: ArrayBuffer): { value: bigint; negative: boolean; octets: number } | undefined {
  const der = new Uint8Array(buffer);
  if (der[0] !== 0x02) return undefined;
  const { header, length } = headerLength(der, 0);
  if (header + length !== der.length || length === 0) return undefined;
  const content = der.subarray(header);
  const negative = (content[0]! & 0x80) !== 0;
  return { value: BigInt("0x" + Buffer.from(content).toString("hex")), negative, octets: content.length };
}

/**
 * The SEQUENCE `der` with its element number `index` (counted from 0) left
 * out when that element has tag `tag`, the outer length rewritten.
 */
export function withoutElement(der: Uint8Array, index: number, tag: number): Uint8Array {
  const outer = headerLength(der, 0);
  let at = outer.header;
  for (let i = 0; at < der.length; i++) {
    const e = headerLength(der, at);
    const end = at + e.header + e.length;
    if (i === index) {
      if (der[at] !== tag) return der;
      return tlv(0x30, der.subarray(outer.header, at), der.subarray(end));
    }
    at = end;
  }
  return der;
}

/**
 * In a tbsCertList's revokedCertificates (its element 5, when that is a
 * SEQUENCE), the first entry whose serial is not a positive INTEGER of at
 * most 20 octets, described; undefined when all are.
 */
export function firstBadEntrySerial(tbs: Uint8Array): string | undefined {
  const outer = headerLength(tbs, 0);
  let at = outer.header;
  for (let i = 0; i < 5 && at < tbs.length; i++) {
    const e = headerLength(tbs, at);
    at += e.header + e.length;
  }
  if (tbs[at] !== 0x30) return undefined;
  const list = headerLength(tbs, at);
  const end = at + list.header + list.length;
  let index = 0;
  for (let p = at + list.header; p < end; index++) {
    const entry = headerLength(tbs, p);
    const serialAt = p + entry.header;
    const serial = headerLength(tbs, serialAt);
    const first = tbs[serialAt + serial.header]!;
    if (tbs[serialAt] !== 0x02 || serial.length === 0 || serial.length > 20 || first & 0x80) {
      return `entry ${index}: serial ${Buffer.from(tbs.subarray(serialAt + serial.header, serialAt + serial.header + serial.length)).toString("hex")} is not a positive INTEGER of at most 20 octets`;
    }
    p += entry.header + entry.length;
  }
  return undefined;
}
