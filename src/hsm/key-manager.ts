import type { CaKeyAlgorithm } from "./key-algorithms.ts";
import type { SigningCrypto } from "./signing-crypto.ts";

/**
 * The seam between hsm-ca and its keys, after step-ca's kms/apiv1: find or
 * create a key, read its public half, get a signer for it, destroy it.
 * Keys are addressed by their label (CKA_LABEL); labels are never reused.
 * Everything above src/hsm uses this (or a narrower part of it), never a
 * PKCS#11 handle and never the concrete class, which only the composition
 * root (src/service.ts) and the CLI's own process construct.
 */
export interface KeyManager {
  /** Is there a private key with this label (on the root token first, when there is one)? */
  hasKey(label: string): boolean;
  /** The key's CKA_ID, hex. HsmKeyError when there is no such key. */
  keyId(label: string): string;
  /**
   * Makes a key pair: a token object, sensitive, never extractable.
   * `on: "root"` makes it on the separate root token, when one is configured.
   * Refuses (HsmKeyError) a label that is taken.
   */
  generateKey(label: string, algorithm: CaKeyAlgorithm, on?: "issuing" | "root"): Promise<GeneratedKey>;
  /**
   * A private key already on the token (made elsewhere: a vendor's key
   * ceremony), found by label and/or CKA_ID on the token where keys of that
   * role live (`on`, as for generateKey), described as the token reports it.
   * Changes nothing on the token. HsmKeyError when there is no such key, when
   * the selector names several, when a key found by CKA_ID has no label of its
   * own (hsm-ca addresses keys by label), or when it is of a kind hsm-ca does
   * not sign with (EC P-256/P-384, RSA 2048/3072/4096 only).
   */
  findExistingKey(selector: KeySelector, on?: "issuing" | "root"): Promise<ExistingKey>;
  /**
   * Why the HSM cannot make or sign with keys of this algorithm (its module
   * lacks a mechanism: opencryptoki's soft token has no EC), or undefined
   * when it can. generateKey refuses such an algorithm with this reason.
   */
  unsupportedReason(algorithm: CaKeyAlgorithm): string | undefined;
  /** The public half, SubjectPublicKeyInfo DER (as the token describes the key; `algorithm` is what the caller expects). */
  publicKeySpki(label: string, algorithm: CaKeyAlgorithm): Promise<ArrayBuffer>;
  /** What signs with the key: the CA code's only view of a private key. */
  signer(label: string, algorithm: CaKeyAlgorithm): Signer;
  /**
   * Another process may have made keys (a rotation by `hsm-ca rotate`, an
   * approval, another replica): makes this process's lookups see them. On a
   * module that reads its object store only at C_Initialize (tpm2-pkcs11)
   * that re-initialises it; on others it does nothing. Call it when such a
   * change is noticed, before looking for the new keys.
   */
  rereadKeys(): Promise<void>;
  /** Destroys the key pair; false when there was nothing to destroy. Callers decide that it is no longer needed. */
  destroyKey(label: string): boolean;
  /** What may be shown about the keys and the HSM, to anyone who may look (the HTTP layer gets only this). */
  readonly status: KeyManagerStatus;
  /** Lets go of the HSM; nothing works afterwards. */
  close(): void;
}

/**
 * A private key lent for one operation together with the WebCrypto provider
 * that holds it. The HSM is one implementation; the CA code never sees PKCS#11.
 */
export interface Signer {
  /** Parameters for the signature, e.g. ECDSA with SHA-256. */
  readonly signingAlgorithm: Algorithm;
  use<T>(fn: (key: CryptoKey, crypto: SigningCrypto) => Promise<T>): Promise<T>;
}

/** Read-only: the HSM's health, its session pool, and where each key came from. Uses no key. */
export interface KeyManagerStatus {
  /** The token that holds the issuing keys. */
  readonly tokenLabel: string;
  /** Where root keys are made: the separate root token when configured (present or not), else the one token. */
  readonly rootToken: { label: string; present: boolean };
  /** False while the HSM is unavailable and being reconnected, and once closed. */
  readonly available: boolean;
  readonly poolStats: { size: number; inUse: number; waiting: number };
  /** Asks the token something cheap; when it does not answer, the HSM is marked unavailable (and reconnects), and the detail says why. */
  health(): { ok: true } | { ok: false; detail: string };
  /** The key's attributes that say where it came from and whether it can leave the token; HsmKeyError when there is no such key. */
  provenance(label: string): KeyProvenance;
}

/** Attributes that say where a key came from, whether it can leave the token, and whether it may sign. */
export interface KeyProvenance {
  token: boolean;
  /** CKA_PRIVATE: seen only after a login. */
  private: boolean;
  /** CKA_LOCAL: generated on this token (false: imported or unwrapped). */
  local: boolean;
  sensitive: boolean;
  alwaysSensitive: boolean;
  extractable: boolean;
  neverExtractable: boolean;
  /** CKA_SIGN. */
  sign: boolean;
}

/** Names a key on the token: by CKA_LABEL, by CKA_ID (hex), or both (then both must be the key's). */
export interface KeySelector {
  label?: string;
  /** CKA_ID, lower-case hex. */
  id?: string;
}

/** A private key found on the token, as the token reports it. */
export interface ExistingKey {
  /** Its CKA_LABEL: how hsm-ca addresses it from now on. */
  label: string;
  /** CKA_ID, hex. */
  id: string;
  algorithm: CaKeyAlgorithm;
  /** SubjectPublicKeyInfo, DER. */
  spki: ArrayBuffer;
  /** Read from the public key object with the same CKA_ID, or (none there) from the private key's own attributes. */
  publicKeyFrom: "public-key-object" | "private-key";
  provenance: KeyProvenance;
  /** The label of the token it is on. */
  token: string;
}

export interface GeneratedKey {
  label: string;
  /** CKA_ID, hex. */
  id: string;
  algorithm: CaKeyAlgorithm;
  /** SubjectPublicKeyInfo, DER. */
  spki: ArrayBuffer;
}

/** Small secrets sealed under a named AES-256 key that never leaves the token (EAB HMAC keys). */
export interface SecretSealer {
  /** AES-GCM under the named secret key, made on first use; `aad` is bound to the result. */
  encrypt(label: string, plaintext: Buffer, aad: Buffer): Promise<Buffer>;
  /** Opens what encrypt sealed; SecretKeyError when the key is absent or the value does not authenticate under it. */
  decrypt(label: string, sealed: Buffer, aad: Buffer): Promise<Buffer>;
}

/** Small private data objects on the token, for values kept outside the database (the audit anchor). */
export interface TokenDataObjects {
  /** The values of the data objects with this label; none when there is none. */
  readDataObjects(label: string): Buffer[];
  /** Makes value the data object with this label, replacing what was there. */
  writeDataObject(label: string, value: Buffer): void;
}
