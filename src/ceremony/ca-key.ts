import crypto from "node:crypto";
import { sha256Hex } from "../ca/fingerprint.ts";
import type { ExistingKey, GeneratedKey, KeyManager, KeyProvenance } from "../hsm/key-manager.ts";
import { KEY_ALGORITHM_SPECS, type CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import type { Database } from "../store/database.ts";
import { caUsingKey } from "../store/key-users.ts";
import { keyWeaknesses } from "./key-weaknesses.ts";

/**
 * Which key a new CA gets: by default a fresh one made on the token; with a
 * label or a CKA_ID, a key that is already there (made in a vendor ceremony)
 * is adopted instead.
 */
export interface KeyChoice {
  label?: string;
  /** CKA_ID, lower-case hex. */
  id?: string;
  /** Adopt a key that is extractable or not sensitive anyway (recorded in the transcript and audit log). */
  allowWeakKey?: boolean;
  /**
   * The algorithm the operator asked for explicitly (e.g. --intermediate-algorithm):
   * an adopted key of another kind is refused. Unset: an adopted key's own
   * algorithm is used, whatever the configured default.
   */
  algorithm?: CaKeyAlgorithm;
  /**
   * Where the new CA will be recorded (the ceremony's transaction): a key
   * that a CA or a pending CA there already uses is refused. Required to adopt.
   */
  db?: Database;
}

export interface CaKey extends GeneratedKey {
  origin: "generated" | "adopted";
  /** An adopted key's attributes as the token reported them when it was adopted. */
  provenance?: KeyProvenance;
  /** What is weak about an adopted key that --allow-weak-key let through (see keyWeaknesses); empty otherwise. */
  weaknesses: string[];
}

/** A key that cannot be adopted (weak, already used, of another algorithm than asked): the ceremony stops, nothing is recorded. */
export class KeyChoiceError extends Error {}

/** Is a key to be adopted rather than made? */
export function adopts(choice: KeyChoice | undefined): boolean {
  return choice?.label !== undefined || choice?.id !== undefined;
}

/** The key for a new CA of this role: made now, or adopted when `choice` names one. */
export async function caKeyFor(
  hsm: KeyManager,
  role: "root" | "intermediate",
  algorithm: CaKeyAlgorithm,
  choice: KeyChoice = {},
): Promise<CaKey> {
  if (adopts(choice)) return adoptKey(hsm, role, choice);
  const key = await hsm.generateKey(newKeyLabel(role), algorithm, role === "root" ? "root" : "issuing");
  return { ...key, origin: "generated", weaknesses: [] };
}

/**
 * An existing key for a new CA, after checking what the token says about
 * it: one of hsm-ca's algorithms (the one asked for, if one was), allowed
 * to sign, not used by another CA, private, sensitive and never
 * extractable (or --allow-weak-key, and the weaknesses are returned to be
 * recorded), and its public key really its own (a test signature verified
 * in software). Changes nothing on the token.
 */
async function adoptKey(hsm: KeyManager, role: "root" | "intermediate", choice: KeyChoice): Promise<CaKey> {
  if (!choice.db) throw new Error("adopting a key needs the database its CA goes into (KeyChoice.db)");
  const key = await hsm.findExistingKey({ label: choice.label, id: choice.id }, role === "root" ? "root" : "issuing");
  const name = `the key "${key.label}" (CKA_ID ${key.id || "none"}) on token "${key.token}"`;
  if (choice.algorithm && choice.algorithm !== key.algorithm) {
    throw new KeyChoiceError(`${name} is ${key.algorithm}, not the ${choice.algorithm} asked for: leave out the algorithm option to use the key's own`);
  }
  // Not something --allow-weak-key can let through: the CA could not sign anything.
  if (!key.provenance.sign) throw new KeyChoiceError(`${name} may not sign (CKA_SIGN=false): a CA key must`);
  const user = await caUsingKey(choice.db, { label: key.label, spkiSha256: sha256Hex(key.spki) });
  if (user) throw new KeyChoiceError(`${name} is already the key of ${user}: one key, one CA`);
  const weaknesses = keyWeaknesses(key.provenance);
  if (weaknesses.length > 0 && !choice.allowWeakKey) {
    throw new KeyChoiceError(`${name} is weak (${weaknesses.map((w) => w.replace(/ \(.*\)$/, "")).join("; ")}): refused; --allow-weak-key adopts it anyway and records why`);
  }
  await proveKeyPair(hsm, key, name);
  return { label: key.label, id: key.id, algorithm: key.algorithm, spki: key.spki, origin: "adopted", provenance: key.provenance, weaknesses };
}

/** Signs a random challenge with the private key and verifies it with the public key found beside it: a mismatched pair would make a CA certificate for another key. */
async function proveKeyPair(hsm: KeyManager, key: ExistingKey, name: string): Promise<void> {
  const spec = KEY_ALGORITHM_SPECS[key.algorithm];
  const challenge = crypto.randomBytes(32);
  const signer = hsm.signer(key.label, key.algorithm);
  const signature = await signer.use((privateKey, signing) => signing.subtle.sign(signer.signingAlgorithm, privateKey, challenge));
  const publicKey = await crypto.webcrypto.subtle.importKey("spki", key.spki, spec.keyParams, false, ["verify"]);
  if (!(await crypto.webcrypto.subtle.verify(spec.signParams, publicKey, signature, challenge))) {
    throw new KeyChoiceError(`${name}: its public key (from the ${key.publicKeyFrom === "public-key-object" ? "public key object with the same CKA_ID" : "private key's attributes"}) does not verify its signature; they are not one key pair`);
  }
}

/** hsm-ca/<role>/<date>-<random>: readable in pkcs11-tool, unique on the token. */
export function newKeyLabel(role: string): string {
  const date = new Date().toISOString().slice(0, 10).replaceAll("-", "");
  return `hsm-ca/${role}/${date}-${crypto.randomBytes(4).toString("hex")}`;
}
