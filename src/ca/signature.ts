import { integerFromHex, sequence } from "../asn1/der-writer.ts";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import type { Signer } from "../hsm/key-manager.ts";

/**
 * Signatures over DER we assemble ourselves (CRLs, OCSP responses): the
 * AlgorithmIdentifier to put beside them, and the signature in X.509 form.
 */
const ALGORITHM_IDENTIFIERS: Record<CaKeyAlgorithm, Uint8Array> = {
  // ecdsa-with-SHA256 / -SHA384: no parameters (RFC 5758).
  "ecdsa-p256": hex("300a06082a8648ce3d040302"),
  "ecdsa-p384": hex("300a06082a8648ce3d040303"),
  // sha256WithRSAEncryption with NULL parameters (RFC 4055).
  "rsa-2048": hex("300d06092a864886f70d01010b0500"),
  "rsa-3072": hex("300d06092a864886f70d01010b0500"),
  "rsa-4096": hex("300d06092a864886f70d01010b0500"),
};

/** DER of the signature AlgorithmIdentifier for a CA key. */
export function signatureAlgorithmDer(algorithm: CaKeyAlgorithm): Uint8Array {
  return ALGORITHM_IDENTIFIERS[algorithm];
}

/**
 * Signs `tbs` with the CA key. WebCrypto gives ECDSA signatures as r||s;
 * X.509 wants DER SEQUENCE { r INTEGER, s INTEGER }.
 */
export async function signTbs(signer: Signer, algorithm: CaKeyAlgorithm, tbs: Uint8Array): Promise<Uint8Array> {
  const raw = new Uint8Array(await signer.use((key, crypto) => crypto.subtle.sign(signer.signingAlgorithm, key, tbs as Uint8Array<ArrayBuffer>)));
  if (!algorithm.startsWith("ecdsa")) return raw;
  const half = raw.length / 2;
  return ecdsaSignatureDer(raw.subarray(0, half), raw.subarray(half));
}

/** ECDSA-Sig-Value (RFC 3279 §2.2.3): r and s as unsigned DER INTEGERs. */
export function ecdsaSignatureDer(r: Uint8Array, s: Uint8Array): Uint8Array {
  return sequence(integerFromHex(Buffer.from(r).toString("hex")), integerFromHex(Buffer.from(s).toString("hex")));
}

function hex(s: string): Uint8Array {
  return Uint8Array.from(Buffer.from(s, "hex"));
}
