/**
 * The CA key algorithms the HSM generates, and how WebCrypto names them for
 * key generation and for signing. Hash sizes follow the key's strength.
 */
export const CA_KEY_ALGORITHMS = ["ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096"] as const;
export type CaKeyAlgorithm = (typeof CA_KEY_ALGORITHMS)[number];

export interface KeyAlgorithmSpec {
  /** Parameters for subtle.generateKey / keyStorage.getItem. */
  keyParams: EcKeyGenParams | RsaHashedKeyGenParams;
  /** Parameters for subtle.sign (and @peculiar/x509's signingAlgorithm). */
  signParams: EcdsaParams | Algorithm;
}

const RSA_EXPONENT = new Uint8Array([1, 0, 1]);

function rsa(bits: number): KeyAlgorithmSpec {
  return {
    keyParams: { name: "RSASSA-PKCS1-v1_5", modulusLength: bits, publicExponent: RSA_EXPONENT, hash: "SHA-256" },
    signParams: { name: "RSASSA-PKCS1-v1_5" },
  };
}

export const KEY_ALGORITHM_SPECS: Record<CaKeyAlgorithm, KeyAlgorithmSpec> = {
  "ecdsa-p256": {
    keyParams: { name: "ECDSA", namedCurve: "P-256" },
    signParams: { name: "ECDSA", hash: "SHA-256" } as EcdsaParams,
  },
  "ecdsa-p384": {
    keyParams: { name: "ECDSA", namedCurve: "P-384" },
    signParams: { name: "ECDSA", hash: "SHA-384" } as EcdsaParams,
  },
  "rsa-2048": rsa(2048),
  "rsa-3072": rsa(3072),
  "rsa-4096": rsa(4096),
};

export function isCaKeyAlgorithm(value: string): value is CaKeyAlgorithm {
  return (CA_KEY_ALGORITHMS as readonly string[]).includes(value);
}
