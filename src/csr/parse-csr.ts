import { DerError } from "../asn1/der-error.ts";
import { readChildren, readOid, readTlv, type Tlv } from "../asn1/der-reader.ts";
import { derOfPemBlock } from "../asn1/pem.ts";
import { TAG } from "../asn1/tags.ts";
import { Rejection } from "../errors.ts";
import { readSignatureAlgorithm, verifySignature } from "./csr-signature.ts";
import { DistinguishedName } from "./distinguished-name.ts";
import { readGeneralNames, type RequestedName } from "./general-names.ts";
import { readSubjectPublicKey, type SubjectKey } from "./subject-key.ts";


export interface ParsedCsr {
  /** The CSR as received, DER. */
  der: Uint8Array;
  /** The subject as requested: subject.field("CN") and the like. */
  subject: DistinguishedName;
  key: SubjectKey;
  /** SubjectPublicKeyInfo, DER, byte for byte as in the CSR. */
  spki: ArrayBuffer;
  /** Names asked for in the CSR's extensionRequest SAN, as written. */
  sans: RequestedName[];
  /** RSA keys only: the public exponent e. */
  rsaPublicExponent?: bigint;
}

const OID = {
  extensionRequest: "1.2.840.113549.1.9.14",
  subjectAltName: "2.5.29.17",
} as const;

/** "NEW CERTIFICATE REQUEST" is what openssl req -newhdr, keytool and certreq write. */
const PEM_LABELS = ["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"] as const;

const NOT_PKCS10 = "the PEM block does not contain a DER-encoded PKCS#10 certificate request";

/**
 * Parses a PEM CSR, decides what its key is and checks its signature.
 * Every refusal says what was wrong in words a requester can act on.
 *
 * The DER is walked in place and the signature checked with node:crypto:
 * building @peculiar/x509 objects and going through WebCrypto cost a
 * millisecond or more per CSR, most of an issuance.
 */
export async function parseCsr(pem: string): Promise<ParsedCsr> {
  const block = typeof pem === "string" ? derOfPemBlock(pem, PEM_LABELS) : { problem: "no-block" as const };
  if ("problem" in block) {
    throw block.problem === "no-block"
      ? new Rejection("bad-csr", 'csr must be a PEM "CERTIFICATE REQUEST" block')
      : new Rejection("bad-csr", NOT_PKCS10);
  }
  const der = block.der;
  const parts = splitRequest(der);

  let subject: DistinguishedName;
  try {
    subject = DistinguishedName.read(der, parts.subject);
  } catch {
    throw new Rejection("bad-csr", "the CSR's subject cannot be parsed");
  }
  const sans = requestedSans(der, parts.attributes);

  const spki = der.subarray(parts.spki.start, parts.spki.end);
  const publicKey = readSubjectPublicKey(spki);
  const algorithm = readSignatureAlgorithm(der, parts.signatureAlgorithm);
  const signed = der.subarray(parts.info.start, parts.info.end);
  if (!parts.signature || !(await verifySignature(algorithm, publicKey, signed, parts.signature))) {
    throw new Rejection("bad-csr-signature", "the CSR's signature does not verify with its own public key");
  }
  const parsed: ParsedCsr = { der, subject, key: publicKey.key, spki: new Uint8Array(spki).buffer, sans };
  if (publicKey.rsaPublicExponent !== undefined) parsed.rsaPublicExponent = publicKey.rsaPublicExponent;
  return parsed;
}

interface RequestParts {
  /** CertificationRequestInfo: what the signature covers. */
  info: Tlv;
  subject: Tlv;
  spki: Tlv;
  /** [0] IMPLICIT SET OF Attribute; some old encoders leave it out, and x509 accepted that. */
  attributes: Tlv | undefined;
  signatureAlgorithm: Tlv;
  /** Undefined when the BIT STRING has unused bits: such a signature verifies nothing. */
  signature: Uint8Array | undefined;
}

/**
 * CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature BIT STRING },
 * CertificationRequestInfo ::= SEQUENCE { version INTEGER, subject Name, subjectPKInfo, attributes [0] },
 * with nothing after it: only the shapes, the parts are read by their own readers.
 */
function splitRequest(der: Uint8Array): RequestParts {
  try {
    const outer = readTlv(der, 0);
    if (outer.tag !== TAG.SEQUENCE || outer.end !== der.length) throw new DerError("not one SEQUENCE");
    const [info, signatureAlgorithm, bits, ...rest] = readChildren(der, outer);
    if (info?.tag !== TAG.SEQUENCE || !signatureAlgorithm || bits?.tag !== TAG.BIT_STRING || rest.length) throw new DerError("not a CertificationRequest");
    if (bits.end === bits.contentStart || der[bits.contentStart]! > 7) throw new DerError("not a BIT STRING");
    const [version, subject, spki, attributes, ...more] = readChildren(der, info);
    if (version?.tag !== TAG.INTEGER || subject?.tag !== TAG.SEQUENCE || spki?.tag !== TAG.SEQUENCE || (attributes && attributes.tag !== 0xa0) || more.length) {
      throw new DerError("not a CertificationRequestInfo");
    }
    const signature = der[bits.contentStart] === 0 ? der.subarray(bits.contentStart + 1, bits.end) : undefined;
    return { info, subject, spki, attributes, signatureAlgorithm, signature };
  } catch {
    throw new Rejection("bad-csr", NOT_PKCS10);
  }
}

/**
 * The SAN of the first extensionRequest attribute (as x509 read it: the
 * first value, the first subjectAltName extension in it). Other extensions
 * and attributes are only checked for shape: the CA does not copy them.
 */
function requestedSans(der: Uint8Array, attributes: Tlv | undefined): RequestedName[] {
  let san: Tlv | undefined;
  try {
    let seenExtensionRequest = false;
    for (const attribute of attributes ? readChildren(der, attributes) : []) {
      const [type, values, ...rest] = attribute.tag === TAG.SEQUENCE ? readChildren(der, attribute) : [];
      if (!type || values?.tag !== TAG.SET || rest.length) throw new DerError("not an Attribute");
      if (readOid(der, type) !== OID.extensionRequest || seenExtensionRequest) continue;
      seenExtensionRequest = true;
      const [extensions] = readChildren(der, values);
      san = extensions && subjectAltName(der, extensions);
    }
  } catch {
    throw new Rejection("bad-csr", "the CSR's attributes cannot be parsed");
  }
  if (!san) return [];
  try {
    const names = readTlv(der, san.contentStart, san.end);
    if (names.end !== san.end) throw new DerError("trailing bytes after GeneralNames");
    return readGeneralNames(der, names);
  } catch {
    throw new Rejection("bad-csr", "the CSR's subjectAltName extension cannot be parsed");
  }
}

/** Extensions ::= SEQUENCE OF Extension; the extnValue OCTET STRING of the first subjectAltName. */
function subjectAltName(der: Uint8Array, extensions: Tlv): Tlv | undefined {
  if (extensions.tag !== TAG.SEQUENCE) throw new DerError("not Extensions");
  let san: Tlv | undefined;
  for (const extension of readChildren(der, extensions)) {
    // Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
    const parts = extension.tag === TAG.SEQUENCE ? readChildren(der, extension) : [];
    const [id, critical, value] = parts.length === 2 ? [parts[0], undefined, parts[1]] : parts;
    if (!id || (critical && critical.tag !== TAG.BOOLEAN) || value?.tag !== TAG.OCTET_STRING || parts.length > 3) throw new DerError("not an Extension");
    if (!san && readOid(der, id) === OID.subjectAltName) san = value;
  }
  return san;
}
