import crypto from "node:crypto";
import type { GeneratedKey, KeyManager } from "../hsm/key-manager.ts";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";

/**
 * Which key a new CA gets: by default a fresh one made on the token; with a
 * label or a CKA_ID, a key that is already there (made in a vendor ceremony)
 * is adopted instead.
 */
export interface KeyChoice {
  label?: string;
  /** CKA_ID, hex. */
  id?: string;
  /** Adopt a key that is extractable or not sensitive anyway (recorded in the transcript and audit log). */
  allowWeakKey?: boolean;
}

export interface CaKey extends GeneratedKey {
  origin: "generated" | "adopted";
}

export class KeyChoiceError extends Error {}

/** The key for a new CA of this role: made now, or adopted when `choice` names one. */
export async function caKeyFor(
  hsm: KeyManager,
  role: "root" | "intermediate",
  algorithm: CaKeyAlgorithm,
  choice: KeyChoice = {},
): Promise<CaKey> {
  if (choice.label !== undefined || choice.id !== undefined) {
    throw new KeyChoiceError("adopting a key already on the token is not built yet");
  }
  const key = await hsm.generateKey(newKeyLabel(role), algorithm, role === "root" ? "root" : "issuing");
  return { ...key, origin: "generated" };
}

/** hsm-ca/<role>/<date>-<random>: readable in pkcs11-tool, unique on the token. */
export function newKeyLabel(role: string): string {
  const date = new Date().toISOString().slice(0, 10).replaceAll("-", "");
  return `hsm-ca/${role}/${date}-${crypto.randomBytes(4).toString("hex")}`;
}
