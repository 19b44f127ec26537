import crypto from "node:crypto";
import { KEY_ALGORITHM_SPECS, type CaKeyAlgorithm } from "../hsm/key-algorithms.ts";

/**
 * Software keys of each CA key algorithm (same curve, same RSA modulus
 * size), made once per process and never stored: what the gate signs with
 * before the HSM does, so that an independent decoder sees the object
 * exactly as it will be, signature size included. Made on first use (an
 * RSA-4096 key takes a second or two, off the event loop), then shared.
 */
export interface ThrowawayKey {
  /** For node:crypto.sign (hand-assembled DER). */
  privateKey: crypto.KeyObject;
  /** For @peculiar/x509's generator (CA certificates). */
  cryptoKey: CryptoKey;
  publicKey: CryptoKey;
  /** node:crypto's digest name for the algorithm's signature. */
  hash: "sha256" | "sha384";
}

const keys = new Map<CaKeyAlgorithm, Promise<ThrowawayKey>>();

export function throwawayKey(algorithm: CaKeyAlgorithm): Promise<ThrowawayKey> {
  let key = keys.get(algorithm);
  if (!key) {
    key = makeKey(algorithm);
    keys.set(algorithm, key);
    key.catch(() => keys.delete(algorithm));
  }
  return key;
}

async function makeKey(algorithm: CaKeyAlgorithm): Promise<ThrowawayKey> {
  const spec = KEY_ALGORITHM_SPECS[algorithm];
  const pair = (await crypto.webcrypto.subtle.generateKey(spec.keyParams, false, ["sign", "verify"])) as CryptoKeyPair;
  return {
    privateKey: crypto.KeyObject.from(pair.privateKey as crypto.webcrypto.CryptoKey),
    cryptoKey: pair.privateKey,
    publicKey: pair.publicKey,
    hash: algorithm === "ecdsa-p384" ? "sha384" : "sha256",
  };
}

/** The signature X.509 carries (ECDSA as DER Ecdsa-Sig-Value), made with the throwaway key. */
export async function throwawaySignature(algorithm: CaKeyAlgorithm, tbs: Uint8Array): Promise<Buffer> {
  const key = await throwawayKey(algorithm);
  return crypto.sign(key.hash, tbs, { key: key.privateKey, dsaEncoding: "der" });
}
