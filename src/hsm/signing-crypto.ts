import crypto from "node:crypto";
import type * as graphene from "graphene-pk11";
// Default import: pkcs11js is CommonJS and its constants are not visible as ESM named exports.
import pkcs11 from "pkcs11js";
import { UnsupportedSignatureError } from "./errors.ts";
import type { SignThreads } from "./sign-threads.ts";

/**
 * The project's WebCrypto provider for CA signatures: `subtle.sign` only,
 * straight onto one PKCS#11 session with C_SignInit + C_Sign.
 *
 * Why not node-webcrypto-p11 for signing: it reads key attributes and
 * checks algorithms on every call and reaches about an eighth of the raw
 * C_Sign rate (../shared/notes/hsm.md); here a signature is one hash in
 * software, one C_SignInit and one asynchronous C_Sign on a libuv worker
 * thread, so the main thread is free while the token signs. Key generation
 * and export still go through node-webcrypto-p11 (rare, not hot).
 *
 * ECDSA signs the digest (CKM_ECDSA) and returns r||s as WebCrypto does;
 * RSASSA-PKCS1-v1_5 hands the data to CKM_SHA*_RSA_PKCS, or, on a token
 * without it (opencryptoki 3.8), hashes in software and signs the
 * DigestInfo with CKM_RSA_PKCS: the same signature bytes (RFC 8017 9.2).
 */

/** A CA private key on the token: a WebCrypto CryptoKey that carries its PKCS#11 object handle. */
export class Pkcs11SigningKey implements CryptoKey {
  readonly type = "private" as const;
  readonly extractable = false;
  readonly usages: KeyUsage[] = ["sign"];

  constructor(
    readonly algorithm: EcKeyAlgorithm | RsaHashedKeyAlgorithm,
    /** CKO_PRIVATE_KEY handle; object handles are valid in every session of the module. */
    readonly handle: Buffer,
  ) {}
}

/** The part of WebCrypto the CA signs through. */
export interface SigningCrypto {
  readonly subtle: Pick<SubtleCrypto, "sign">;
  getRandomValues<T extends ArrayBufferView | null>(array: T): T;
}

/** Per hash: node's name, and the DER DigestInfo prefix before the digest (RFC 8017 9.2, note 1). */
const HASHES: Record<string, { node: string; digestInfo: Buffer }> = {
  "SHA-256": { node: "sha256", digestInfo: Buffer.from("3031300d060960864801650304020105000420", "hex") },
  "SHA-384": { node: "sha384", digestInfo: Buffer.from("3041300d060960864801650304020205000430", "hex") },
  "SHA-512": { node: "sha512", digestInfo: Buffer.from("3051300d060960864801650304020305000440", "hex") },
};

/** How this token signs: from its capabilities (src/hsm/capabilities.ts) and how its module was initialised. */
export interface SigningOptions {
  /** CKM_SHA*_RSA_PKCS per hash name when the token has it; otherwise the DigestInfo goes to CKM_RSA_PKCS. */
  rsaHashed: Readonly<Record<string, number | undefined>>;
  /**
   * Sign on the main thread (synchronous C_Sign): for a module initialised
   * without CKF_OS_LOCKING_OK, which must never be called from two threads
   * at once. Slower, but such a module gets no concurrent call at all.
   */
  synchronous: boolean;
  /**
   * Worker threads that run C_SignInit and C_Sign together
   * (src/hsm/sign-threads.ts); unset: C_SignInit on the event loop and
   * C_Sign on a libuv thread.
   */
  threads?: SignThreads;
}

/** What SoftHSM2 and most HSMs offer: every hashed RSA mechanism, OS locking. */
export const DEFAULT_SIGNING_OPTIONS: SigningOptions = {
  rsaHashed: { "SHA-256": pkcs11.CKM_SHA256_RSA_PKCS, "SHA-384": pkcs11.CKM_SHA384_RSA_PKCS, "SHA-512": pkcs11.CKM_SHA512_RSA_PKCS },
  synchronous: false,
};

const EC_SIGNATURE_BYTES: Record<string, number> = { "P-256": 64, "P-384": 96, "P-521": 132 };

/** WebCrypto's `subtle.sign` on one PKCS#11 session; the caller holds the session for the call. */
class Pkcs11Subtle implements Pick<SubtleCrypto, "sign"> {
  constructor(
    private readonly session: graphene.Session,
    private readonly options: SigningOptions,
  ) {}

  sign(algorithm: AlgorithmIdentifier | EcdsaParams | RsaPssParams, key: CryptoKey, data: BufferSource): Promise<ArrayBuffer> {
    if (!(key instanceof Pkcs11SigningKey)) return Promise.reject(new UnsupportedSignatureError("not a key of this HSM"));
    const name = typeof algorithm === "string" ? algorithm : algorithm.name;
    const input = toBuffer(data);
    if (name === "ECDSA" && key.algorithm.name === "ECDSA") {
      const hash = HASHES[hashName((algorithm as EcdsaParams).hash)];
      const size = EC_SIGNATURE_BYTES[(key.algorithm as EcKeyAlgorithm).namedCurve];
      if (!hash || !size) return Promise.reject(new UnsupportedSignatureError(`ECDSA with ${hashName((algorithm as EcdsaParams).hash)} on ${(key.algorithm as EcKeyAlgorithm).namedCurve}`));
      const digest = crypto.createHash(hash.node).update(input).digest();
      return this.run(pkcs11.CKM_ECDSA, key, digest, size);
    }
    if (name === "RSASSA-PKCS1-v1_5" && key.algorithm.name === "RSASSA-PKCS1-v1_5") {
      const rsa = key.algorithm as RsaHashedKeyAlgorithm;
      const hash = HASHES[hashName(rsa.hash)];
      if (!hash) return Promise.reject(new UnsupportedSignatureError(`RSASSA-PKCS1-v1_5 with ${hashName(rsa.hash)}`));
      const size = Math.ceil(rsa.modulusLength / 8);
      const hashed = this.options.rsaHashed[hashName(rsa.hash)];
      if (hashed !== undefined) return this.run(hashed, key, input, size);
      const digestInfo = Buffer.concat([hash.digestInfo, crypto.createHash(hash.node).update(input).digest()]);
      return this.run(pkcs11.CKM_RSA_PKCS, key, digestInfo, size);
    }
    return Promise.reject(new UnsupportedSignatureError(`${name} with a ${key.algorithm.name} key`));
  }

  private run(mechanism: number, key: Pkcs11SigningKey, input: Buffer, size: number): Promise<ArrayBuffer> {
    const { lib, handle } = this.session;
    if (this.options.synchronous) {
      try {
        lib.C_SignInit(handle, { mechanism }, key.handle);
        const signature = lib.C_Sign(handle, input, Buffer.allocUnsafe(size));
        return Promise.resolve(signature.buffer.slice(signature.byteOffset, signature.byteOffset + signature.byteLength) as ArrayBuffer);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    const threads = this.options.threads;
    if (threads?.healthy) return threads.sign(handle, mechanism, key.handle, input, size).then((s) => s.buffer.slice(s.byteOffset, s.byteOffset + s.byteLength) as ArrayBuffer);
    return new Promise((resolve, reject) => {
      try {
        lib.C_SignInit(handle, { mechanism }, key.handle);
        lib.C_Sign(handle, input, Buffer.allocUnsafe(size), (err, signature) => {
          if (err) reject(err);
          else resolve(signature.buffer.slice(signature.byteOffset, signature.byteOffset + signature.byteLength) as ArrayBuffer);
        });
      } catch (err) {
        reject(err);
      }
    });
  }
}

/** A SigningCrypto bound to one session. */
export function signingCryptoFor(session: graphene.Session, options: SigningOptions = DEFAULT_SIGNING_OPTIONS): SigningCrypto {
  return {
    subtle: new Pkcs11Subtle(session, options),
    getRandomValues: (array) => crypto.getRandomValues(array as ArrayBufferView) as typeof array,
  };
}

/** For libraries typed against the whole WebCrypto (@peculiar/x509), which only sign through it. */
export function asWebCrypto(c: SigningCrypto): Crypto {
  return c as unknown as Crypto;
}

function hashName(hash: AlgorithmIdentifier | undefined): string {
  if (hash === undefined) return "";
  return (typeof hash === "string" ? hash : hash.name).toUpperCase();
}

function toBuffer(data: BufferSource): Buffer {
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.from(data);
}
