import crypto from "node:crypto";
import * as graphene from "graphene-pk11";
import type { CaKeyAlgorithm } from "./key-algorithms.ts";

/**
 * A CA key pair made on the token with every attribute that matters set
 * explicitly: modules differ in their defaults (opencryptoki makes keys
 * extractable unless told otherwise), so nothing is left to them.
 * Both halves are token objects (tpm2-pkcs11 cannot make session objects
 * anyway). The private key may sign and nothing else.
 */

/** CKA_EC_PARAMS: the DER of the curve's named-curve OID. */
const EC_PARAMS: Partial<Record<CaKeyAlgorithm, Buffer>> = {
  "ecdsa-p256": Buffer.from("06082a8648ce3d030107", "hex"),
  "ecdsa-p384": Buffer.from("06052b81040022", "hex"),
};
const RSA_BITS: Partial<Record<CaKeyAlgorithm, number>> = { "rsa-2048": 2048, "rsa-3072": 3072, "rsa-4096": 4096 };

export interface KeyPairObjects {
  privateKey: graphene.SessionObject;
  publicKey: graphene.SessionObject;
}

/**
 * Generates the pair on this session: asynchronously on a libuv worker
 * thread (RSA on a TPM takes seconds), or synchronously on a module that
 * runs without OS locking.
 */
export function generateKeyPair(session: graphene.Session, label: string, algorithm: CaKeyAlgorithm, synchronous: boolean): Promise<KeyPairObjects> {
  const id = crypto.randomBytes(16);
  const common = { token: true, label, id };
  const ec = EC_PARAMS[algorithm];
  const mechanism = ec ? graphene.KeyGenMechanism.EC : graphene.KeyGenMechanism.RSA;
  const publicTemplate: graphene.ITemplate = ec
    ? { ...common, class: graphene.ObjectClass.PUBLIC_KEY, keyType: graphene.KeyType.EC, private: false, verify: true, paramsEC: ec }
    : {
        ...common,
        class: graphene.ObjectClass.PUBLIC_KEY,
        keyType: graphene.KeyType.RSA,
        private: false,
        verify: true,
        encrypt: false,
        wrap: false,
        modulusBits: RSA_BITS[algorithm]!,
        publicExponent: Buffer.from([1, 0, 1]),
      };
  const privateTemplate: graphene.ITemplate = {
    ...common,
    class: graphene.ObjectClass.PRIVATE_KEY,
    keyType: ec ? graphene.KeyType.EC : graphene.KeyType.RSA,
    private: true,
    sensitive: true,
    extractable: false,
    sign: true,
    ...(ec ? { derive: false } : { decrypt: false, unwrap: false }),
  };
  const done = (pair: graphene.IKeyPair): KeyPairObjects => ({ privateKey: pair.privateKey, publicKey: pair.publicKey });
  if (synchronous) {
    try {
      return Promise.resolve(done(session.generateKeyPair(mechanism, publicTemplate, privateTemplate)));
    } catch (err) {
      return Promise.reject(err);
    }
  }
  return new Promise((resolve, reject) => {
    session.generateKeyPair(mechanism, publicTemplate, privateTemplate, (err, pair) => (err || !pair ? reject(err ?? new Error("C_GenerateKeyPair returned no keys")) : resolve(done(pair))));
  });
}
