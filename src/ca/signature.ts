import { AsnConvert } from "@peculiar/asn1-schema";
import { ECDSASigValue } from "@peculiar/asn1-ecc";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import type { CaSigner } from "./signer.ts";

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
export async function signTbs(signer: CaSigner, algorithm: CaKeyAlgorithm, tbs: Uint8Array): Promise<Uint8Array> {
  const raw = new Uint8Array(await signer.use((key, crypto) => crypto.subtle.sign(signer.signingAlgorithm, key, tbs as Uint8Array<ArrayBuffer>)));
  if (!algorithm.startsWith("ecdsa")) return raw;
  const half = raw.length / 2;
  const sig = new ECDSASigValue({ r: integerBytes(raw.subarray(0, half)), s: integerBytes(raw.subarray(half)) });
  return new Uint8Array(AsnConvert.serialize(sig));
}

/** An unsigned big-endian number as DER INTEGER content: no extra leading zeros, a 0x00 before a high bit. */
function integerBytes(n: Uint8Array): ArrayBuffer {
  let i = 0;
  while (i < n.length - 1 && n[i] === 0) i++;
  const trimmed = n.subarray(i);
  const out = trimmed[0]! & 0x80 ? Uint8Array.of(0, ...trimmed) : Uint8Array.from(trimmed);
  return out.buffer;
}

function hex(s: string): Uint8Array {
  return Uint8Array.from(Buffer.from(s, "hex"));
}
