import { sequence, tlv } from "../asn1/der-writer.ts";
import { TAG } from "../asn1/tags.ts";
import type { LeafTemplate } from "./leaf-template.ts";

/** A leaf's subject Name, written per certificate, and its text as @peculiar/x509 prints it. */

const NAME_OIDS: Record<string, Uint8Array> = {
  CN: Uint8Array.of(0x06, 0x03, 0x55, 0x04, 0x03),
  C: Uint8Array.of(0x06, 0x03, 0x55, 0x04, 0x06),
  L: Uint8Array.of(0x06, 0x03, 0x55, 0x04, 0x07),
  ST: Uint8Array.of(0x06, 0x03, 0x55, 0x04, 0x08),
  O: Uint8Array.of(0x06, 0x03, 0x55, 0x04, 0x0a),
  OU: Uint8Array.of(0x06, 0x03, 0x55, 0x04, 0x0b),
};
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;
const UTF8_STRING = 0x0c;
const PRINTABLE_STRING = 0x13;

/** One attribute per RDN, in order; PrintableString when the value allows it, else UTF8String. */
export function subjectName(subject: LeafTemplate["subject"]): Uint8Array {
  return sequence(
    ...subject.map(([attr, value]) => {
      const type = NAME_OIDS[attr];
      if (!type) throw new Error(`subject attribute ${attr} is not supported`);
      const str = tlv(PRINTABLE.test(value) ? PRINTABLE_STRING : UTF8_STRING, Buffer.from(value, "utf8"));
      return tlv(TAG.SET, sequence(type, str));
    }),
  );
}

/** As @peculiar/x509's Name.toString(): RFC 4514 escapes, ", " between RDNs. */
export function subjectString(subject: LeafTemplate["subject"]): string {
  return subject
    .map(([attr, value]) => {
      const escaped = value
        .replace(/([,+"\\<>;])/g, "\\$1")
        .replace(/^([ #])/, "\\$1")
        .replace(/([ ]$)/, "\\$1")
        .replace(/([\r\n\t])/, (c) => `\\${Buffer.from(c).toString("hex").toUpperCase()}`);
      return `${attr}=${escaped}`;
    })
    .join(", ");
}
