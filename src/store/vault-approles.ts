import { and, asc, eq, gt, isNull, lt } from "drizzle-orm";
import type { Database } from "./database.ts";
import { vaultAppRoles, vaultClientTokens } from "./schema.ts";

export type VaultAppRoleRow = typeof vaultAppRoles.$inferSelect;

export async function insertVaultAppRole(db: Database, row: typeof vaultAppRoles.$inferInsert): Promise<VaultAppRoleRow> {
  const [inserted] = await db.insert(vaultAppRoles).values(row).returning();
  return inserted!;
}

export async function activeVaultAppRoleByRoleId(db: Database, roleId: string): Promise<VaultAppRoleRow | undefined> {
  const [row] = await db
    .select()
    .from(vaultAppRoles)
    .where(and(eq(vaultAppRoles.roleId, roleId), isNull(vaultAppRoles.revokedAt)));
  return row;
}

export async function activeVaultAppRoleByName(db: Database, name: string): Promise<VaultAppRoleRow | undefined> {
  const [row] = await db
    .select()
    .from(vaultAppRoles)
    .where(and(eq(vaultAppRoles.name, name), isNull(vaultAppRoles.revokedAt)));
  return row;
}

/** Every AppRole, oldest first (revoked ones too: their certificates name them). */
export async function listVaultAppRoleRows(db: Database): Promise<VaultAppRoleRow[]> {
  return db.select().from(vaultAppRoles).orderBy(asc(vaultAppRoles.createdAt), asc(vaultAppRoles.id));
}

/** active -> revoked, once; its client tokens die with it (they are looked up through it). */
export async function revokeVaultAppRoleRow(db: Database, id: string, at: Date): Promise<VaultAppRoleRow | undefined> {
  const [row] = await db
    .update(vaultAppRoles)
    .set({ revokedAt: at })
    .where(and(eq(vaultAppRoles.id, id), isNull(vaultAppRoles.revokedAt)))
    .returning();
  return row;
}

export async function insertVaultClientToken(db: Database, row: typeof vaultClientTokens.$inferInsert): Promise<void> {
  await db.insert(vaultClientTokens).values(row);
}

/** A client token that has not expired, with its AppRole, unless the AppRole was revoked. */
export async function liveVaultClientToken(db: Database, secretSha256: string, now: Date): Promise<{ tokenId: string; expiresAt: Date; appRole: VaultAppRoleRow } | undefined> {
  const [row] = await db
    .select({ tokenId: vaultClientTokens.id, expiresAt: vaultClientTokens.expiresAt, appRole: vaultAppRoles })
    .from(vaultClientTokens)
    .innerJoin(vaultAppRoles, eq(vaultAppRoles.id, vaultClientTokens.appRoleId))
    .where(and(eq(vaultClientTokens.secretSha256, secretSha256), gt(vaultClientTokens.expiresAt, now), isNull(vaultAppRoles.revokedAt)));
  return row;
}

/** Expired client tokens say nothing anymore: dropped at each login. */
export async function deleteExpiredVaultClientTokens(db: Database, now: Date): Promise<void> {
  await db.delete(vaultClientTokens).where(lt(vaultClientTokens.expiresAt, now));
}
