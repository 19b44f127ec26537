import { DerError, DerReader, TAGS, children, readBits, readBoolean, readOid, readSmallInteger, readString, readTime, type Element } from "./der.ts";
import type { NameText } from "./names.ts";

/**
 * A TBSCertificate as the gate reads it with its own strict DER reader
 * (src/lint/der.ts): every field of RFC 5280 §4.1 and the extensions the
 * rules look at, as plain data. Throws DerError when the bytes are not a
 * TBSCertificate in DER.
 */
export interface DecodedCertificate {
  version: number;
  /** The serial INTEGER's content octets. */
  serial: Uint8Array;
  /** The signature AlgorithmIdentifier, whole. */
  signatureAlgorithm: Uint8Array;
  /** The issuer Name, whole (RFC 5280 §4.1.2.4: it must be the issuer's subject, octet for octet as hsm-ca writes them). */
  issuerDer: Uint8Array;
  notBefore?: { utcTime?: Date; generalTime?: Date };
  notAfter?: { utcTime?: Date; generalTime?: Date };
  /** (attribute OID, value) in DN order; RDNs of several attributes flattened in their order. */
  subject: Array<{ type: string; value: string }>;
  /** The SubjectPublicKeyInfo, whole. */
  spki: Uint8Array;
  extensions: DecodedExtension[];
}

export interface DecodedExtension {
  id: string;
  critical: boolean;
  /** The extnValue OCTET STRING's content: the extension's own DER. */
  value: Uint8Array;
}

export function decodeTbsCertificate(tbs: Uint8Array): DecodedCertificate {
  const outer = new DerReader(tbs, "TBSCertificate");
  const seq = outer.next(TAGS.SEQUENCE);
  outer.end();
  const r = new DerReader(seq.content, "TBSCertificate");
  const versionTag = r.optional(0xa0);
  let version = 0;
  if (versionTag) {
    const v = new DerReader(versionTag.content, "version");
    version = readSmallInteger(v.next(), "version");
    v.end();
    if (version === 0) throw new DerError("der-canonical", "version v1 written out (DER omits a DEFAULT value)");
  }
  const serial = r.next(TAGS.INTEGER).content;
  const signatureAlgorithm = r.next(TAGS.SEQUENCE).der;
  const issuerDer = r.next(TAGS.SEQUENCE).der;
  const validity = new DerReader(r.next(TAGS.SEQUENCE).content, "validity");
  const notBefore = readTime(validity.next());
  const notAfter = readTime(validity.next());
  validity.end();
  const subject = decodeName(r.next(TAGS.SEQUENCE));
  const spki = r.next(TAGS.SEQUENCE).der;
  if (r.peekTag() === 0x81 || r.peekTag() === 0x82) throw new DerError("der-decode", "issuer or subject unique identifiers, which RFC 5280 §4.1.2.8 tells CAs not to write");
  const extensionsTag = r.optional(0xa3);
  r.end();
  const extensions: DecodedExtension[] = [];
  if (extensionsTag) {
    const list = new DerReader(extensionsTag.content, "extensions");
    const seqOf = list.next(TAGS.SEQUENCE);
    list.end();
    if (seqOf.content.length === 0) throw new DerError("der-decode", "an empty extensions list (RFC 5280: SIZE (1..MAX))");
    for (const e of children(seqOf, "extensions")) extensions.push(decodeExtension(e));
  }
  return { version, serial, signatureAlgorithm, issuerDer, notBefore, notAfter, subject, spki, extensions };
}

function decodeName(name: Element): Array<{ type: string; value: string }> {
  const out: Array<{ type: string; value: string }> = [];
  for (const rdn of children(name, "Name")) {
    if (rdn.tag !== TAGS.SET || rdn.content.length === 0) throw new DerError("der-decode", "Name: an RDN that is not a non-empty SET");
    for (const atv of children(rdn, "RDN")) {
      if (atv.tag !== TAGS.SEQUENCE) throw new DerError("der-decode", "Name: an attribute that is not a SEQUENCE");
      const r = new DerReader(atv.content, "attribute");
      const type = readOid(r.next(), "attribute type");
      const value = readString(r.next());
      r.end();
      out.push({ type, value });
    }
  }
  return out;
}

/** An Extension (RFC 5280 §4.1): critical written out only when TRUE. */
export function decodeExtension(e: Element): DecodedExtension {
  if (e.tag !== TAGS.SEQUENCE) throw new DerError("der-decode", "an extension that is not a SEQUENCE");
  const r = new DerReader(e.content, "extension");
  const id = readOid(r.next(), "extnID");
  const criticalTag = r.optional(TAGS.BOOLEAN);
  const critical = criticalTag ? readBoolean(criticalTag, `extension ${id} critical`) : false;
  if (criticalTag && !critical) throw new DerError("der-canonical", `extension ${id}: critical FALSE written out (DER omits a DEFAULT value)`);
  const value = r.next(TAGS.OCTET_STRING).content;
  r.end();
  return { id, critical, value };
}

/** One element filling the whole of `bytes`. */
function single(bytes: Uint8Array, tag: number, what: string): Element {
  const r = new DerReader(bytes, what);
  const e = r.next(tag);
  r.end();
  return e;
}

/** basicConstraints (§4.2.1.9). */
export function decodeBasicConstraints(value: Uint8Array): { cA: boolean; pathLenConstraint?: number } {
  const r = new DerReader(single(value, TAGS.SEQUENCE, "basicConstraints").content, "basicConstraints");
  const caTag = r.optional(TAGS.BOOLEAN);
  const cA = caTag ? readBoolean(caTag, "basicConstraints cA") : false;
  if (caTag && !cA) throw new DerError("der-canonical", "basicConstraints: cA FALSE written out (DER omits a DEFAULT value)");
  const pathTag = r.optional(TAGS.INTEGER);
  r.end();
  return { cA, pathLenConstraint: pathTag ? readSmallInteger(pathTag, "pathLenConstraint") : undefined };
}

const KEY_USAGE_BITS = ["digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment", "keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly"];

/** keyUsage (§4.2.1.3): the names of the bits set; DER drops trailing zero bits. */
export function decodeKeyUsage(value: Uint8Array): string[] {
  const bits = readBits(single(value, TAGS.BIT_STRING, "keyUsage"), "keyUsage");
  if (bits.length && !bits[bits.length - 1]) throw new DerError("der-canonical", "keyUsage: trailing zero bits (DER removes them from a named bit list)");
  return bits.flatMap((set, i) => (set ? [KEY_USAGE_BITS[i] ?? `bit${i}`] : []));
}

/** extKeyUsage (§4.2.1.12): the purposes' OIDs in order. */
export function decodeExtendedKeyUsage(value: Uint8Array): string[] {
  return children(single(value, TAGS.SEQUENCE, "extKeyUsage"), "extKeyUsage").map((e) => readOid(e, "extKeyUsage purpose"));
}

/** subjectKeyIdentifier (§4.2.1.2). */
export function decodeSubjectKeyIdentifier(value: Uint8Array): Buffer {
  return Buffer.from(single(value, TAGS.OCTET_STRING, "subjectKeyIdentifier").content);
}

/** authorityKeyIdentifier (§4.2.1.1): its keyIdentifier, if it has one. */
export function decodeAuthorityKeyIdentifier(value: Uint8Array): { keyIdentifier?: Buffer } {
  const r = new DerReader(single(value, TAGS.SEQUENCE, "authorityKeyIdentifier").content, "authorityKeyIdentifier");
  const id = r.optional(0x80);
  r.optional(0xa1);
  r.optional(0x82);
  r.end();
  return { keyIdentifier: id ? Buffer.from(id.content) : undefined };
}

/** subjectAltName (§4.2.1.6): each GeneralName as text, the way templates write them. */
export function decodeSubjectAltName(value: Uint8Array): NameText[] {
  return children(single(value, TAGS.SEQUENCE, "subjectAltName"), "subjectAltName").map(generalName);
}

function generalName(e: Element): NameText {
  const text = () => Buffer.from(e.content).toString("latin1");
  switch (e.tag) {
    case 0x81:
      return { type: "email", value: text() };
    case 0x82:
      return { type: "dns", value: text() };
    case 0x86:
      return { type: "url", value: text() };
    case 0x87:
      return { type: "ip", value: ipText(e.content) };
    case 0xa4:
      return { type: "directoryName", value: "(a directory name)" };
    case 0x88:
      return { type: "registeredID", value: readOid({ ...e, tag: TAGS.OID }, "registeredID") };
    case 0xa0:
      return { type: "otherName", value: readOid(new DerReader(e.content, "otherName").next(), "otherName type") };
    default:
      return { type: "other", value: "" };
  }
}

function ipText(b: Uint8Array): string {
  if (b.length === 4) return b.join(".");
  if (b.length === 16) {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(((b[i]! << 8) | b[i + 1]!).toString(16));
    // The canonical text form (RFC 5952) is what templates hold: net.SocketAddress would do it on Node 22; URL does it here.
    return new URL(`http://[${groups.join(":")}]/`).hostname.slice(1, -1);
  }
  return `(${b.length} octets)`;
}
