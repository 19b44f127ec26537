import crypto from "node:crypto";
import * as graphene from "graphene-pk11";
// Default import: pkcs11js is CommonJS and its constants are not visible as ESM named exports.
import pkcs11 from "pkcs11js";
import { SecretKeyError } from "./errors.ts";

/**
 * Authenticated encryption under a named AES-256 secret key that lives on
 * the token: generated there (CKM_AES_KEY_GEN), sensitive and never
 * extractable, so that what it seals can be opened only with the token.
 *
 * AES-GCM (CKM_AES_GCM; SoftHSM2 2.6 offers it, and it is the one AEAD in
 * PKCS#11 2.40 that HSMs commonly implement), a random 96-bit IV per
 * message, a 128-bit tag, and associated data the caller chooses (what the
 * plaintext belongs to, so that a sealed value moved to another row does
 * not open). The sealed form is IV (12 bytes) || ciphertext || tag (16).
 *
 * The functions run on a session lent to the caller alone (a pool member):
 * the calls are synchronous, the data is a few dozen bytes.
 */

const IV_BYTES = 12;
const TAG_BYTES = 16;

/** Seals plaintext; makes the key on the token first when there is none (then `created` says so, with its CKA_ID). */
export function sealWithSecretKey(
  session: graphene.Session,
  label: string,
  plaintext: Buffer,
  aad: Buffer,
): { sealed: Buffer; keyId: string; created: boolean } {
  let key = findSecretKey(session, label);
  const created = key === undefined;
  key ??= generateSecretKey(session, label);
  const iv = crypto.randomBytes(IV_BYTES);
  const cipher = session.createCipher(gcm(iv, aad), key);
  const body = cipher.once(plaintext, Buffer.alloc(plaintext.length + TAG_BYTES));
  return { sealed: Buffer.concat([iv, body]), keyId: idOf(key), created };
}

/** Opens what sealWithSecretKey sealed with the same label and associated data; SecretKeyError when it does not authenticate. */
export function openWithSecretKey(session: graphene.Session, label: string, sealed: Buffer, aad: Buffer): { plaintext: Buffer; keyId: string } {
  const key = findSecretKey(session, label);
  if (!key) throw new SecretKeyError(`no secret key labelled "${label}" on the token`);
  if (sealed.length < IV_BYTES + TAG_BYTES) throw new SecretKeyError("the sealed value is too short");
  const iv = sealed.subarray(0, IV_BYTES);
  try {
    const decipher = session.createDecipher(gcm(iv, aad), key);
    return { plaintext: decipher.once(sealed.subarray(IV_BYTES), Buffer.alloc(sealed.length)), keyId: idOf(key) };
  } catch (err) {
    // A tag that does not verify is CKR_ENCRYPTED_DATA_INVALID, or with
    // SoftHSM2 CKR_GENERAL_ERROR, which also means "the HSM is gone": ask
    // the token. If it still answers, the value was not sealed by this key
    // (another token's, or altered); otherwise the caller's error handling
    // sees the original error and reconnects.
    if (err instanceof pkcs11.Pkcs11Error && tokenAnswers(session)) {
      throw new SecretKeyError(`the sealed value does not authenticate under "${label}": sealed by another key, or altered`);
    }
    throw err;
  }
}

function findSecretKey(session: graphene.Session, label: string): graphene.SecretKey | undefined {
  const found = session.find({ class: graphene.ObjectClass.SECRET_KEY, label, token: true });
  if (found.length > 1) throw new SecretKeyError(`${found.length} secret keys share the label "${label}" on the token`);
  return found.length === 1 ? found.items(0).toType<graphene.SecretKey>() : undefined;
}

function generateSecretKey(session: graphene.Session, label: string): graphene.SecretKey {
  return session.generateKey(graphene.KeyGenMechanism.AES, {
    class: graphene.ObjectClass.SECRET_KEY,
    keyType: graphene.KeyType.AES,
    valueLen: 32,
    label,
    id: crypto.randomBytes(16),
    token: true,
    private: true,
    sensitive: true,
    extractable: false,
    // Only for sealing and opening: no wrapping, signing or deriving with it.
    encrypt: true,
    decrypt: true,
    wrap: false,
    unwrap: false,
    sign: false,
    verify: false,
    derive: false,
  });
}

function gcm(iv: Buffer, aad: Buffer): graphene.IAlgorithm {
  return { name: "AES_GCM", params: new graphene.AesGcm240Params(iv, aad, TAG_BYTES * 8) };
}

function idOf(key: graphene.SecretKey): string {
  return (key.getAttribute("id") as Buffer).toString("hex");
}

function tokenAnswers(session: graphene.Session): boolean {
  try {
    session.lib.C_GetSessionInfo(session.handle);
    session.lib.C_GetTokenInfo(session.slot.handle);
    return true;
  } catch {
    return false;
  }
}
