import { SecretKeyError } from "../hsm/errors.ts";
import type { SecretSealer } from "../hsm/key-manager.ts";
import { eabKeysNotStartingWith, insertEabKey, replaceEabHmacKey, type EabKeyRow } from "../store/acme-eab-keys.ts";
import type { Database } from "../store/database.ts";
import { LOCKS, withAdvisoryLock } from "../store/locks.ts";

/**
 * EAB HMAC keys at rest. Whoever holds an HMAC key can bind an account
 * (RFC 8555 §7.3.4), so acme_eab_keys.hmac_key holds it sealed under an
 * AES-256 key that lives in the HSM and never leaves it: a database dump
 * alone forges nothing. Stored form: "v1:" + base64url(IV || ciphertext ||
 * tag), AES-GCM with the row's directory and kid as associated data, so a
 * sealed value copied to another row, directory or CA does not open.
 * Rows from before (the bare base64url key, which never contains ":") are
 * sealed in place when the service starts.
 */
export const EAB_WRAPPING_KEY_LABEL = "hsm-ca eab wrapping key";
export const SEALED_PREFIX = "v1:";

/** The HSM's part: seal and open with a named secret key. */
export type EabSealer = SecretSealer;

/** The stored key cannot be used: not sealed, sealed under another key, altered, or the wrapping key is gone. */
export class EabKeyUnusable extends Error {}

/** Stores a new EAB key, sealed. Under a lock: the first seal makes the wrapping key, and two replicas must not both make one. */
export async function createEabKey(
  db: Database,
  hsm: EabSealer,
  key: { kid: string; hmacKey: Buffer; directory: string; description: string | null },
): Promise<void> {
  await withAdvisoryLock(db, LOCKS.eabSealing, async (tx) => {
    const sealed = await seal(hsm, key.kid, key.directory, key.hmacKey);
    await insertEabKey(tx, { kid: key.kid, hmacKey: sealed, directory: key.directory, description: key.description });
  });
}

/** The HMAC key of a stored EAB key; EabKeyUnusable when this CA's HSM cannot open it. */
export async function openEabHmacKey(hsm: EabSealer, row: EabKeyRow): Promise<Buffer> {
  if (!row.hmacKey.startsWith(SEALED_PREFIX)) {
    // Sealed at every start; one left in clear was written since, not by this version.
    throw new EabKeyUnusable(`EAB key ${row.kid} is stored unsealed`);
  }
  const sealed = Buffer.from(row.hmacKey.slice(SEALED_PREFIX.length), "base64url");
  try {
    return await hsm.decrypt(EAB_WRAPPING_KEY_LABEL, sealed, boundTo(row.kid, row.directory));
  } catch (err) {
    if (err instanceof SecretKeyError) throw new EabKeyUnusable(`EAB key ${row.kid} cannot be opened: ${err.message}`);
    throw err;
  }
}

/** Seals, in place, every EAB key still stored in clear; returns how many. */
export async function sealPlaintextEabKeys(db: Database, hsm: EabSealer): Promise<number> {
  return withAdvisoryLock(db, LOCKS.eabSealing, async (tx) => {
    let sealedCount = 0;
    for (const row of await eabKeysNotStartingWith(tx, SEALED_PREFIX)) {
      const sealed = await seal(hsm, row.kid, row.directory, Buffer.from(row.hmacKey, "base64url"));
      if (await replaceEabHmacKey(tx, row.kid, row.hmacKey, sealed)) sealedCount++;
    }
    return sealedCount;
  });
}

async function seal(hsm: EabSealer, kid: string, directory: string, hmacKey: Buffer): Promise<string> {
  const sealed = await hsm.encrypt(EAB_WRAPPING_KEY_LABEL, hmacKey, boundTo(kid, directory));
  return SEALED_PREFIX + sealed.toString("base64url");
}

/** What a sealed HMAC key belongs to. */
function boundTo(kid: string, directory: string): Buffer {
  return Buffer.from(`hsm-ca acme eab hmac key\0${directory}\0${kid}`, "utf8");
}
