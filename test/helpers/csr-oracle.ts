/**
 * The CSR parser hsm-ca had before it walked the DER itself: @peculiar/x509
 * and WebCrypto, kept as the oracle the new parser must agree with.
 * Returns a plain outcome (refusal kind, or what was read) for comparison.
 */
import "reflect-metadata";
import { AsnConvert } from "@peculiar/asn1-schema";
import { ECParameters } from "@peculiar/asn1-ecc";
import { RSAPublicKey } from "@peculiar/asn1-rsa";
import { SubjectPublicKeyInfo } from "@peculiar/asn1-x509";
import * as x509 from "@peculiar/x509";
import { parseCsr } from "../../src/csr/parse-csr.ts";
import { Rejection } from "../../src/errors.ts";

export type CsrOutcome =
  | { refused: string }
  | {
      key: unknown;
      spki: string;
      sans: Array<{ type: string; value: string }>;
      subject: string;
      fields: Record<string, string[]>;
    };

/** What field() is asked for: every short name x509.Name knows, plus a few by OID. */
export const FIELD_NAMES = ["CN", "L", "ST", "O", "OU", "C", "DC", "E", "G", "I", "SN", "T", "2.5.4.5", "2.5.4.17", "1.2.3.4", "SERIALNUMBER"];

export async function outcomeOfNew(pem: string): Promise<CsrOutcome> {
  try {
    const csr = await parseCsr(pem);
    return {
      key: csr.key,
      spki: Buffer.from(csr.spki).toString("hex"),
      sans: csr.sans,
      subject: csr.subject.toString(),
      fields: Object.fromEntries(FIELD_NAMES.map((f) => [f, csr.subject.field(f)])),
    };
  } catch (err) {
    if (err instanceof Rejection) return { refused: err.kind };
    throw err;
  }
}

export async function outcomeOfOracle(pem: string): Promise<CsrOutcome> {
  try {
    const { csr, key, spki, sans } = await oldParseCsr(pem);
    return {
      key,
      spki: Buffer.from(spki).toString("hex"),
      sans,
      subject: csr.subjectName.toString(),
      fields: Object.fromEntries(FIELD_NAMES.map((f) => [f, csr.subjectName.getField(f)])),
    };
  } catch (err) {
    if (err instanceof Rejection) return { refused: err.kind };
    throw err;
  }
}

// --- The old implementation, as it was in src/ca/csr.ts ---

async function oldParseCsr(pem: string) {
  if (!/-----BEGIN (NEW )?CERTIFICATE REQUEST-----/.test(pem)) {
    throw new Rejection("bad-csr", 'csr must be a PEM "CERTIFICATE REQUEST" block');
  }
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem.replace(/NEW CERTIFICATE REQUEST/g, "CERTIFICATE REQUEST"));
  } catch {
    throw new Rejection("bad-csr", "the PEM block does not contain a DER-encoded PKCS#10 certificate request");
  }
  let spki: ArrayBuffer;
  try {
    spki = csr.publicKey.rawData;
  } catch {
    throw new Rejection("bad-public-key", "the CSR's public key cannot be parsed");
  }
  try {
    void csr.subjectName.toString();
    void csr.extensions;
  } catch {
    throw new Rejection("bad-csr", "the CSR's subject or attributes cannot be parsed");
  }
  const key = oldClassifyKey(spki);
  let valid = false;
  try {
    valid = await csr.verify();
  } catch {
    valid = false;
  }
  if (!valid) throw new Rejection("bad-csr-signature", "the CSR's signature does not verify with its own public key");
  const ext = csr.getExtension("2.5.29.17");
  let sans: x509.JsonGeneralName[] = [];
  if (ext) {
    try {
      sans = new x509.SubjectAlternativeNameExtension(ext.rawData).names.toJSON();
    } catch {
      throw new Rejection("bad-csr", "the CSR's subjectAltName extension cannot be parsed");
    }
  }
  return { csr, key, spki, sans };
}

function oldClassifyKey(spki: ArrayBuffer) {
  let info: SubjectPublicKeyInfo;
  try {
    info = AsnConvert.parse(spki, SubjectPublicKeyInfo);
  } catch {
    throw new Rejection("bad-public-key", "the CSR's public key cannot be parsed");
  }
  const alg = info.algorithm.algorithm;
  if (alg === "1.3.101.112") return { type: "ed25519" };
  if (alg === "1.2.840.10045.2.1") {
    const params = info.algorithm.parameters;
    let curve = "";
    try {
      curve = params ? (AsnConvert.parse(params, ECParameters).namedCurve ?? "") : "";
    } catch {
      curve = "";
    }
    if (curve === "1.2.840.10045.3.1.7") return { type: "ecdsa", curve: "P-256" };
    if (curve === "1.3.132.0.34") return { type: "ecdsa", curve: "P-384" };
    throw new Rejection("bad-public-key", `elliptic curve ${curve || "(none)"} is not supported`);
  }
  if (alg === "1.2.840.113549.1.1.1") {
    let bits: number;
    try {
      const rsa = AsnConvert.parse(info.subjectPublicKey, RSAPublicKey);
      const modulus = new Uint8Array(rsa.modulus);
      const start = modulus.findIndex((b) => b !== 0);
      bits = start < 0 ? 0 : (modulus.length - start) * 8 - Math.clz32(modulus[start]!) + 24;
    } catch {
      throw new Rejection("bad-public-key", "the CSR's RSA public key cannot be parsed");
    }
    if (bits < 2048 || bits > 8192) throw new Rejection("bad-public-key", `RSA ${bits}-bit keys are not accepted`);
    return { type: "rsa", bits };
  }
  throw new Rejection("bad-public-key", `public key algorithm ${alg} is not supported`);
}
