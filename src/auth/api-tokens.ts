import crypto from "node:crypto";
import { Rejection } from "../errors.ts";
import {
  activeApiTokenByHash,
  activeApiTokenById,
  apiTokenById,
  insertApiToken,
  listApiTokenRows,
  revokeApiTokenRow,
  type ApiTokenRow,
} from "../store/api-tokens.ts";
import type { Database } from "../store/database.ts";

export const ROLES = ["admin", "issuer", "auditor"] as const;
export type Role = (typeof ROLES)[number];

/** Who is calling, as far as authorization cares. Never holds the secret. */
export interface Principal {
  tokenId: string;
  role: Role;
  /** For issuers: the profiles they may issue from. */
  profiles: string[];
}

export interface NewApiToken {
  id: string;
  /** Shown once; only its SHA-256 is stored. */
  secret: string;
  role: Role;
  profiles: string[];
}

const PREFIX = "hsmca_";

function hash(secret: string): string {
  return crypto.createHash("sha256").update(secret).digest("hex");
}

export async function createApiToken(
  db: Database,
  opts: { role: Role; profiles?: string[]; description?: string },
): Promise<NewApiToken> {
  const profiles = opts.profiles ?? [];
  if (opts.role === "issuer" && profiles.length === 0) {
    throw new Rejection("malformed-request", "an issuer token needs at least one --profile");
  }
  if (opts.role !== "issuer" && profiles.length > 0) {
    throw new Rejection("malformed-request", `--profile applies to issuer tokens only, not ${opts.role}`);
  }
  const id = crypto.randomBytes(6).toString("hex");
  const secret = `${PREFIX}${id}_${crypto.randomBytes(24).toString("base64url")}`;
  await insertApiToken(db, { id, secretSha256: hash(secret), role: opts.role, profiles, description: opts.description ?? null });
  return { id, secret, role: opts.role, profiles };
}

/**
 * A token found valid is believed for this long without asking the
 * database again: a query per request would cost as much as the rest of an
 * issuance. A token revoked in the database (revoked_at) stops working
 * within this time on every replica; unknown tokens are never cached.
 */
export const TOKEN_CACHE_MS = 5_000;
const TOKEN_CACHE_MAX = 10_000;
const tokenCaches = new WeakMap<Database, Map<string, { principal: Principal; until: number }>>();

/** Undefined for a missing, malformed, unknown or revoked token: the caller says 401 either way. */
export async function authenticate(db: Database, secret: string | undefined): Promise<Principal | undefined> {
  if (!secret || !secret.startsWith(PREFIX) || secret.length > 200) return undefined;
  const digest = hash(secret);
  let cache = tokenCaches.get(db);
  if (!cache) tokenCaches.set(db, (cache = new Map()));
  const now = Date.now();
  const hit = cache.get(digest);
  if (hit && hit.until > now) return hit.principal;
  const row: ApiTokenRow | undefined = await activeApiTokenByHash(db, digest);
  if (!row) {
    cache.delete(digest);
    return undefined;
  }
  const principal: Principal = { tokenId: row.id, role: row.role, profiles: row.profiles };
  if (cache.size >= TOKEN_CACHE_MAX) cache.clear();
  cache.set(digest, { principal, until: now + TOKEN_CACHE_MS });
  return principal;
}

/**
 * True when this process has found this token valid before and has not
 * since seen it refused: a memory lookup, no query. Lets a client whose
 * address is over its authentication-failure limit (src/api/auth-failures.ts)
 * through to authenticate(), which still checks revocation.
 */
export function knownValidToken(db: Database, secret: string | undefined): boolean {
  if (!secret || !secret.startsWith(PREFIX) || secret.length > 200) return false;
  return tokenCaches.get(db)?.has(hash(secret)) ?? false;
}

/** A token as `hsm-ca token list` and GET /api/v1/tokens show it: never the secret, nor its hash. */
export interface ApiTokenInfo {
  id: string;
  role: Role;
  profiles: string[];
  description: string | null;
  createdAt: Date;
  revokedAt: Date | null;
}

function infoOf(row: ApiTokenRow): ApiTokenInfo {
  return { id: row.id, role: row.role, profiles: row.profiles, description: row.description, createdAt: row.createdAt, revokedAt: row.revokedAt };
}

export async function listApiTokens(db: Database): Promise<ApiTokenInfo[]> {
  return (await listApiTokenRows(db)).map(infoOf);
}

/**
 * Revokes a token by its public id (idempotent: a revoked one stays as it
 * was, and says so). This process forgets it at once; other replicas and
 * processes within TOKEN_CACHE_MS. Recorded as admin.token.revoke by `by`
 * (an actor: "cli", "token:<id>").
 */
export async function revokeApiToken(
  // The audit log's record(), by shape: auth/ stays below audit/ (whose checkpoints need the HSM and ceremonies).
  deps: { db: Database; now(): Date; audit?: { record(entry: { kind: string; actor: string; subject: string; details: Record<string, unknown> }): void } },
  id: string,
  by: string,
): Promise<{ token: ApiTokenInfo; alreadyRevoked: boolean }> {
  const existing = /^[0-9a-f]{12}$/.test(id) ? await apiTokenById(deps.db, id) : undefined;
  if (!existing) throw new Rejection("not-found", `no API token with id "${id.slice(0, 40)}"`);
  const row = await revokeApiTokenRow(deps.db, id, deps.now());
  forgetToken(deps.db, id);
  if (!row) return { token: infoOf((await apiTokenById(deps.db, id)) ?? existing), alreadyRevoked: true };
  deps.audit?.record({ kind: "admin.token.revoke", actor: by, subject: id, details: { role: row.role, profiles: row.profiles, description: row.description } });
  return { token: infoOf(row), alreadyRevoked: false };
}

/** Drops a token's cached principal in this process: the next request asks the database. */
function forgetToken(db: Database, tokenId: string): void {
  const cache = tokenCaches.get(db);
  if (!cache) return;
  for (const [digest, entry] of cache) if (entry.principal.tokenId === tokenId) cache.delete(digest);
}

/** The principal of a token known by its id (a dashboard session); undefined once the token is revoked. */
export async function principalById(db: Database, tokenId: string): Promise<Principal | undefined> {
  const row = await activeApiTokenById(db, tokenId);
  return row && { tokenId: row.id, role: row.role, profiles: row.profiles };
}

/** What each role may do. Issuers are bound to their listed profiles. */
export function mayIssue(p: Principal, profile: string): boolean {
  return p.role === "admin" || (p.role === "issuer" && p.profiles.includes(profile));
}

export function mayRead(p: Principal): boolean {
  return p.role === "admin" || p.role === "auditor" || p.role === "issuer";
}
