import net from "node:net";
import type * as x509 from "@peculiar/x509";
import { sequence, tlv } from "../asn1/der-writer.ts";
import { TAG } from "../asn1/tags.ts";

/** The subjectAltName extension of a leaf (RFC 5280 §4.2.1.6), written per certificate. */

const OID_SAN = Uint8Array.of(0x06, 0x03, 0x55, 0x1d, 0x11);
const CRITICAL = Uint8Array.of(TAG.BOOLEAN, 1, 0xff);

/** GeneralName tags (RFC 5280 §4.2.1.6), IMPLICIT and primitive. */
const GENERAL_NAME_TAG: Record<string, number> = { email: 0x81, dns: 0x82, url: 0x86, ip: 0x87 };

export function subjectAltName(sans: x509.JsonGeneralName[], critical: boolean): Uint8Array {
  const names = sans.map((san) => {
    const tag = GENERAL_NAME_TAG[san.type];
    if (tag === undefined) throw new Error(`cannot put a ${san.type} name in a certificate`);
    return tlv(tag, san.type === "ip" ? ipAddressBytes(san.value) : ascii(san.value));
  });
  return sequence(OID_SAN, ...(critical ? [CRITICAL] : []), tlv(TAG.OCTET_STRING, sequence(...names)));
}

/** IA5String content: ASCII only (policy has already refused anything else). */
function ascii(s: string): Uint8Array {
  if (!/^[\x00-\x7f]*$/.test(s)) throw new Error(`not ASCII: ${JSON.stringify(s)}`);
  return Buffer.from(s, "latin1");
}

/** An IP address as iPAddress wants it: 4 or 16 bytes, network order. */
export function ipAddressBytes(ip: string): Uint8Array {
  if (net.isIPv4(ip)) return Uint8Array.from(ip.split(".").map(Number));
  if (!net.isIPv6(ip)) throw new Error(`not an IP address: ${ip}`);
  const out = new Uint8Array(16);
  let text = ip;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    out.set(ipAddressBytes(v4[1]!), 12);
    const [a, b, c, d] = v4[1]!.split(".").map(Number) as [number, number, number, number];
    text = text.slice(0, -v4[1]!.length) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split("::") as [string, string | undefined];
  const groups = (s: string | undefined) => (s ? s.split(":").map((g) => parseInt(g, 16)) : []);
  const front = groups(head);
  const back = groups(tail);
  const all = tail === undefined ? front : [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back];
  all.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}
