import crypto from "node:crypto";
import { consumeNonce, insertNonce } from "../store/acme-nonces.ts";
import type { Database } from "../store/database.ts";

/**
 * Nonces live in the database so that any replica accepts any other's, and
 * a nonce is used by deleting it: two requests cannot both use one.
 */
export const NONCE_TTL_MS = 15 * 60_000;

export async function newNonce(db: Database, now: Date): Promise<string> {
  const value = crypto.randomBytes(16).toString("base64url");
  await insertNonce(db, value, new Date(now.getTime() + NONCE_TTL_MS));
  return value;
}

export async function useNonce(db: Database, value: unknown, now: Date): Promise<boolean> {
  if (typeof value !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(value)) return false;
  return consumeNonce(db, value, now);
}
