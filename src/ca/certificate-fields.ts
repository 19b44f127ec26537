import { DerError } from "../asn1/der-error.ts";
import { contentOf, expectTag, readChildren, readTlv, type Tlv } from "../asn1/der-reader.ts";
import { TAG } from "../asn1/tags.ts";

/**
 * The few fields of an X.509 certificate the CA writes into what it signs,
 * taken from the certificate's DER as it is: the subject Name (an issuer
 * name is compared byte for byte) and the public key bits (key identifiers
 * and OCSP key hashes are over them).
 */
export interface CertificateFields {
  /** The subject Name, DER, exactly as the certificate encodes it. */
  subject: Buffer;
  /** The subjectPublicKey BIT STRING's bits, without the unused-bits octet. */
  publicKeyBits: Buffer;
  /** The key algorithm's OID, content octets in hex. */
  keyAlgorithmOid: string;
}

export function certificateFields(der: Uint8Array): CertificateFields {
  const buf = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  const cert = readTlv(buf, 0, buf.length);
  expectTag(cert, TAG.SEQUENCE, "Certificate");
  const [tbs] = readChildren(buf, cert);
  expectTag(tbs, TAG.SEQUENCE, "tbsCertificate");
  const fields = readChildren(buf, tbs);
  // [0] version, serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ...
  const at = fields[0]?.tag === 0xa0 ? 1 : 0;
  const subject = fields[at + 4];
  const spki = fields[at + 5];
  if (!subject || !spki) throw new DerError("tbsCertificate too short");
  expectTag(subject, TAG.SEQUENCE, "subject");
  const key = publicKeyOf(buf, spki);
  return {
    subject: Buffer.from(buf.subarray(subject.start, subject.end)),
    publicKeyBits: Buffer.from(key.bits),
    keyAlgorithmOid: key.algorithmOid,
  };
}

/** The key bits of a SubjectPublicKeyInfo (DER): the content of its BIT STRING after the unused-bits octet. */
export function subjectPublicKeyBits(spki: Uint8Array): Uint8Array {
  return publicKeyOf(spki, readTlv(spki, 0)).bits;
}

function publicKeyOf(buf: Uint8Array, spki: Tlv): { bits: Uint8Array; algorithmOid: string } {
  expectTag(spki, TAG.SEQUENCE, "subjectPublicKeyInfo");
  const [alg, bits] = readChildren(buf, spki);
  expectTag(alg, TAG.SEQUENCE, "algorithm");
  expectTag(bits, TAG.BIT_STRING, "subjectPublicKey");
  const [algOid] = readChildren(buf, alg);
  expectTag(algOid, TAG.OID, "algorithm");
  const bitString = contentOf(buf, bits);
  if (bitString.length < 1 || bitString[0] !== 0) throw new DerError("subjectPublicKey has unused bits");
  return { bits: bitString.subarray(1), algorithmOid: Buffer.from(contentOf(buf, algOid)).toString("hex") };
}
