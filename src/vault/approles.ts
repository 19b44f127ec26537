import crypto from "node:crypto";
import type { Principal } from "../auth/api-tokens.ts";
import { Rejection } from "../errors.ts";
import type { Database } from "../store/database.ts";
import {
  activeVaultAppRoleByName,
  activeVaultAppRoleByRoleId,
  deleteExpiredVaultClientTokens,
  insertVaultAppRole,
  insertVaultClientToken,
  listVaultAppRoleRows,
  liveVaultClientToken,
  revokeVaultAppRoleRow,
  type VaultAppRoleRow,
} from "../store/vault-approles.ts";

/**
 * Vault AppRoles for clients that log in rather than hold a token
 * (cert-manager's auth.appRole, SPIRE's approle_auth). An admin makes one
 * with the CLI; it has an issuer token's scope (its profiles). A login with
 * its role_id and secret_id gets a client token that lasts token_ttl.
 *
 * Client tokens live in their own table, not in api_tokens: they expire,
 * which API tokens do not, and they only open the Vault door. Every login
 * of one AppRole acts as one tenant ("approle:<id>"): certificates issued
 * under yesterday's client token are today's to list and revoke.
 */

export const DEFAULT_APPROLE_TTL_SECONDS = 3600;
/** Client tokens: hsmcav_<accessor>_<secret>; never mistaken for an API token (hsmca_). */
const CLIENT_TOKEN = /^hsmcav_([0-9a-f]{24})_[A-Za-z0-9_-]{32,}$/;

const sha256 = (text: string) => crypto.createHash("sha256").update(text).digest("hex");

export interface AppRoleInfo {
  id: string;
  name: string;
  roleId: string;
  profiles: string[];
  tokenTtlSeconds: number;
  createdAt: Date;
  revokedAt: Date | null;
}

const infoOf = (r: VaultAppRoleRow): AppRoleInfo => ({
  id: r.id,
  name: r.name,
  roleId: r.roleId,
  profiles: r.profiles,
  tokenTtlSeconds: r.tokenTtlSeconds,
  createdAt: r.createdAt,
  revokedAt: r.revokedAt,
});

/** A new AppRole; the secret_id is returned once and only its SHA-256 is kept. */
export async function createAppRole(db: Database, opts: { name: string; profiles: string[]; tokenTtlSeconds?: number }): Promise<AppRoleInfo & { secretId: string }> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(opts.name)) throw new Rejection("malformed-request", "an AppRole name is 1-64 letters, digits, '.', '_' or '-'");
  if (opts.profiles.length === 0) throw new Rejection("malformed-request", "an AppRole needs at least one --profile");
  if (await activeVaultAppRoleByName(db, opts.name)) throw new Rejection("malformed-request", `an AppRole named ${opts.name} exists; revoke it first`);
  const secretId = crypto.randomUUID();
  const row = await insertVaultAppRole(db, {
    id: crypto.randomBytes(6).toString("hex"),
    name: opts.name,
    roleId: crypto.randomUUID(),
    secretIdSha256: sha256(secretId),
    profiles: opts.profiles,
    tokenTtlSeconds: opts.tokenTtlSeconds ?? DEFAULT_APPROLE_TTL_SECONDS,
  });
  return { ...infoOf(row), secretId };
}

export async function listAppRoles(db: Database): Promise<AppRoleInfo[]> {
  return (await listVaultAppRoleRows(db)).map(infoOf);
}

/** By name or id; its client tokens stop working at once. Undefined when no active AppRole has that name or id. */
export async function revokeAppRole(db: Database, nameOrId: string, now: Date): Promise<AppRoleInfo | undefined> {
  const byName = await activeVaultAppRoleByName(db, nameOrId);
  const id = byName?.id ?? nameOrId;
  const row = /^[0-9a-f]{12}$/.test(id) ? await revokeVaultAppRoleRow(db, id, now) : undefined;
  return row && infoOf(row);
}

export interface Login {
  appRole: AppRoleInfo;
  clientToken: string;
  accessor: string;
  leaseSeconds: number;
}

/** Undefined for an unknown role_id, a wrong secret_id or a revoked AppRole: the caller refuses all alike. */
export async function loginAppRole(db: Database, roleId: string, secretId: string, now: Date): Promise<Login | undefined> {
  const row = await activeVaultAppRoleByRoleId(db, roleId);
  // Compared as digests of equal length, in constant time.
  if (!row || !crypto.timingSafeEqual(Buffer.from(row.secretIdSha256, "hex"), Buffer.from(sha256(secretId), "hex"))) return undefined;
  await deleteExpiredVaultClientTokens(db, now);
  const accessor = crypto.randomBytes(12).toString("hex");
  const clientToken = `hsmcav_${accessor}_${crypto.randomBytes(24).toString("base64url")}`;
  await insertVaultClientToken(db, {
    id: accessor,
    secretSha256: sha256(clientToken),
    appRoleId: row.id,
    expiresAt: new Date(now.getTime() + row.tokenTtlSeconds * 1000),
  });
  return { appRole: infoOf(row), clientToken, accessor, leaseSeconds: row.tokenTtlSeconds };
}

/** True for something shaped like a client token (which the API-token check would only count as a failure). */
export function isClientToken(secret: string | undefined): boolean {
  return secret !== undefined && secret.length <= 200 && CLIENT_TOKEN.test(secret);
}

/** The principal of a live client token: an issuer with its AppRole's profiles, acting as "approle:<id>". */
export async function authenticateClientToken(db: Database, secret: string, now: Date): Promise<Principal | undefined> {
  const live = await liveVaultClientToken(db, sha256(secret), now);
  return live && { tokenId: appRoleActor(live.appRole.id), role: "issuer", profiles: live.appRole.profiles };
}

/** When a live client token expires; undefined for anything else. */
export async function clientTokenExpiry(db: Database, secret: string, now: Date): Promise<Date | undefined> {
  return isClientToken(secret) ? (await liveVaultClientToken(db, sha256(secret), now))?.expiresAt : undefined;
}

export const appRoleActor = (id: string) => `approle:${id}`;
