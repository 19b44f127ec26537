import * as graphene from "graphene-pk11";
import { HsmKeyError, KeyNotFoundError } from "./errors.ts";
import { KEY_ALGORITHM_SPECS, type CaKeyAlgorithm } from "./key-algorithms.ts";
import type { PooledSession } from "./session-pool.ts";
import { Pkcs11SigningKey } from "./signing-crypto.ts";

/** Finding keys on a session by label: a label names one object of a class, or none. */

export function findObject(session: graphene.Session, cls: graphene.ObjectClass, label: string): graphene.SessionObject | undefined {
  const found = session.find({ class: cls, label, token: true });
  if (found.length > 1) throw new HsmKeyError(`${found.length} objects share the label "${label}" on the token`);
  return found.length === 1 ? found.items(0) : undefined;
}

/** The object's CKA_ID, hex. */
export function ckaIdOf(obj: graphene.SessionObject): string {
  return (obj.getAttribute("id") as Buffer).toString("hex");
}

/** node-webcrypto-p11's key storage index: class, handle and CKA_ID. */
export function storageId(kind: "private" | "public", obj: graphene.SessionObject, ckaId = ckaIdOf(obj)): string {
  return `${kind}-${obj.handle.toString("hex")}-${ckaId}`;
}

/** The CA private key on this session (cached per session); notes its CKA_ID in ids. */
export function privateKeyOn(member: PooledSession, label: string, algorithm: CaKeyAlgorithm, ids: Map<string, string>): Pkcs11SigningKey {
  const cached = member.keys.get(label);
  if (cached) return cached;
  const obj = findObject(member.session, graphene.ObjectClass.PRIVATE_KEY, label);
  if (!obj) throw new KeyNotFoundError(`no private key labelled "${label}" on the token`);
  refuseContextSpecificLogin(obj, label);
  ids.set(label, ckaIdOf(obj));
  const key = new Pkcs11SigningKey(keyAlgorithm(algorithm), obj.handle);
  member.keys.set(label, key);
  return key;
}

/** The CryptoKey.algorithm WebCrypto would report for a CA key of this kind. */
function keyAlgorithm(algorithm: CaKeyAlgorithm): EcKeyAlgorithm | RsaHashedKeyAlgorithm {
  const params = KEY_ALGORITHM_SPECS[algorithm].keyParams;
  if ("namedCurve" in params) return { name: params.name, namedCurve: params.namedCurve };
  return { name: params.name, modulusLength: params.modulusLength, publicExponent: params.publicExponent, hash: { name: params.hash as string } };
}

/**
 * Keys with CKA_ALWAYS_AUTHENTICATE need the PIN again (C_Login with
 * CKU_CONTEXT_SPECIFIC) before every signature. hsm-ca refuses them: a CA
 * signs thousands of times a second from a pool of sessions, and logging in
 * per signature would keep the PIN in memory for the life of the process
 * and double every signature's round trips. Make (or re-make) the key
 * without that attribute; the token's user login still guards it.
 */
export function refuseContextSpecificLogin(obj: graphene.SessionObject, label: string): void {
  let always: boolean;
  try {
    always = !!obj.getAttribute("alwaysAuth");
  } catch {
    // A module that does not know the attribute (PKCS#11 before 2.20) has no such keys.
    return;
  }
  if (always) {
    throw new HsmKeyError(
      `the key "${label}" has CKA_ALWAYS_AUTHENTICATE set: it would need the PIN again before every signature, which hsm-ca does not do; make the key without it`,
    );
  }
}
