import crypto from "node:crypto";
import { consumeNonce, insertNonce } from "../store/acme-nonces.ts";
import type { Database } from "../store/database.ts";

/**
 * Nonces live in the database so that any replica accepts any other's, and
 * a nonce is used by deleting it: two requests cannot both use one. A
 * signed request stores its response's nonce in the statement that uses
 * its own (src/store/acme-nonces.ts useNonceAndReadAccount); newNonce is
 * for the responses of everything else.
 */
export const NONCE_TTL_MS = 15 * 60_000;

export function freshNonce(now: Date): { value: string; expiresAt: Date } {
  return { value: crypto.randomBytes(16).toString("base64url"), expiresAt: new Date(now.getTime() + NONCE_TTL_MS) };
}

export async function newNonce(db: Database, now: Date): Promise<string> {
  const { value, expiresAt } = freshNonce(now);
  await insertNonce(db, value, expiresAt);
  return value;
}

/** The nonce as the JWS header carries it, if it could be one of ours. */
export function wellFormedNonce(value: unknown): string | undefined {
  return typeof value === "string" && /^[A-Za-z0-9_-]{1,64}$/.test(value) ? value : undefined;
}

export async function useNonce(db: Database, value: unknown, now: Date): Promise<boolean> {
  const nonce = wellFormedNonce(value);
  return nonce !== undefined && consumeNonce(db, nonce, now);
}
