import { AsnConvert } from "@peculiar/asn1-schema";
import { ECParameters } from "@peculiar/asn1-ecc";
import { RSAPublicKey } from "@peculiar/asn1-rsa";
import { SubjectPublicKeyInfo } from "@peculiar/asn1-x509";
import * as x509 from "@peculiar/x509";
import { Rejection } from "../errors.ts";

export type SubjectKey =
  | { type: "ecdsa"; curve: "P-256" | "P-384" }
  | { type: "rsa"; bits: number }
  | { type: "ed25519" };

export interface ParsedCsr {
  csr: x509.Pkcs10CertificateRequest;
  key: SubjectKey;
  /** SubjectPublicKeyInfo, DER. */
  spki: ArrayBuffer;
  /** Names asked for in the CSR's extensionRequest SAN, as written. */
  sans: x509.JsonGeneralName[];
}

const OID = {
  ecPublicKey: "1.2.840.10045.2.1",
  rsaEncryption: "1.2.840.113549.1.1.1",
  ed25519: "1.3.101.112",
  p256: "1.2.840.10045.3.1.7",
  p384: "1.3.132.0.34",
  subjectAltName: "2.5.29.17",
} as const;

const CURVE_NAMES: Record<string, string> = {
  "1.3.132.0.35": "P-521",
  "1.3.132.0.10": "secp256k1",
  "1.3.36.3.3.2.8.1.1.7": "brainpoolP256r1",
};

/** RSA below this size is refused whatever the profile says. */
const MIN_RSA_BITS = 2048;
const MAX_RSA_BITS = 8192;

/**
 * Parses a PEM CSR, decides what its key is and checks its signature.
 * Every refusal says what was wrong in words a requester can act on.
 */
export async function parseCsr(pem: string): Promise<ParsedCsr> {
  if (!/-----BEGIN (NEW )?CERTIFICATE REQUEST-----/.test(pem)) {
    throw new Rejection("bad-csr", 'csr must be a PEM "CERTIFICATE REQUEST" block');
  }
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem.replace(/NEW CERTIFICATE REQUEST/g, "CERTIFICATE REQUEST"));
  } catch {
    throw new Rejection("bad-csr", "the PEM block does not contain a DER-encoded PKCS#10 certificate request");
  }
  // @peculiar/x509 parses a CSR's parts on first use: parse them all here, where
  // a failure is the CSR's fault (a 400), not later as an unexpected error.
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
  const key = classifyKey(spki);
  let valid = false;
  try {
    valid = await csr.verify();
  } catch {
    valid = false;
  }
  if (!valid) throw new Rejection("bad-csr-signature", "the CSR's signature does not verify with its own public key");
  return { csr, key, spki, sans: requestedSans(csr) };
}

export function classifyKey(spki: ArrayBuffer): SubjectKey {
  let info: SubjectPublicKeyInfo;
  try {
    info = AsnConvert.parse(spki, SubjectPublicKeyInfo);
  } catch {
    throw new Rejection("bad-public-key", "the CSR's public key cannot be parsed");
  }
  const alg = info.algorithm.algorithm;
  if (alg === OID.ed25519) return { type: "ed25519" };
  if (alg === OID.ecPublicKey) {
    const params = info.algorithm.parameters;
    let curve = "";
    try {
      curve = params ? (AsnConvert.parse(params, ECParameters).namedCurve ?? "") : "";
    } catch {
      curve = "";
    }
    if (curve === OID.p256) return { type: "ecdsa", curve: "P-256" };
    if (curve === OID.p384) return { type: "ecdsa", curve: "P-384" };
    throw new Rejection("bad-public-key", `elliptic curve ${CURVE_NAMES[curve] ?? (curve || "(none)")} is not supported; use P-256 or P-384`);
  }
  if (alg === OID.rsaEncryption) {
    let bits: number;
    try {
      const rsa = AsnConvert.parse(info.subjectPublicKey, RSAPublicKey);
      const modulus = new Uint8Array(rsa.modulus);
      const start = modulus.findIndex((b) => b !== 0);
      bits = start < 0 ? 0 : (modulus.length - start) * 8 - Math.clz32(modulus[start]!) + 24;
    } catch {
      throw new Rejection("bad-public-key", "the CSR's RSA public key cannot be parsed");
    }
    if (bits < MIN_RSA_BITS) throw new Rejection("bad-public-key", `RSA ${bits}-bit keys are too weak; use at least ${MIN_RSA_BITS} bits`);
    if (bits > MAX_RSA_BITS) throw new Rejection("bad-public-key", `RSA ${bits}-bit keys are not supported; use at most ${MAX_RSA_BITS} bits`);
    return { type: "rsa", bits };
  }
  throw new Rejection("bad-public-key", `public key algorithm ${alg} is not supported; use ECDSA P-256/P-384, RSA or Ed25519`);
}

export function describeKey(key: SubjectKey): string {
  switch (key.type) {
    case "ecdsa":
      return `ECDSA ${key.curve}`;
    case "rsa":
      return `RSA ${key.bits}`;
    case "ed25519":
      return "Ed25519";
  }
}

function requestedSans(csr: x509.Pkcs10CertificateRequest): x509.JsonGeneralName[] {
  const ext = csr.getExtension(OID.subjectAltName);
  if (!ext) return [];
  try {
    return new x509.SubjectAlternativeNameExtension(ext.rawData).names.toJSON();
  } catch {
    throw new Rejection("bad-csr", "the CSR's subjectAltName extension cannot be parsed");
  }
}
