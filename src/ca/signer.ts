import type { SigningCrypto } from "../hsm/signing-crypto.ts";

/**
 * What the CA needs from a key store: a CA private key, lent for one
 * operation together with the WebCrypto provider that holds it. The HSM is
 * one implementation; the CA code never sees PKCS#11.
 */
export interface CaSigner {
  /** Parameters for the signature, e.g. ECDSA with SHA-256. */
  readonly signingAlgorithm: Algorithm;
  use<T>(fn: (key: CryptoKey, crypto: SigningCrypto) => Promise<T>): Promise<T>;
}
