import { and, asc, eq, isNull } from "drizzle-orm";
import type { Database } from "./database.ts";
import { apiTokens } from "./schema.ts";

export type ApiTokenRow = typeof apiTokens.$inferSelect;

export async function insertApiToken(db: Database, row: typeof apiTokens.$inferInsert): Promise<ApiTokenRow> {
  const [inserted] = await db.insert(apiTokens).values(row).returning();
  return inserted!;
}

export async function activeApiTokenByHash(db: Database, secretSha256: string): Promise<ApiTokenRow | undefined> {
  const [row] = await db
    .select()
    .from(apiTokens)
    .where(and(eq(apiTokens.secretSha256, secretSha256), isNull(apiTokens.revokedAt)));
  return row;
}

/** A token by its public id, unless revoked (a dashboard session names its token by id). */
export async function activeApiTokenById(db: Database, id: string): Promise<ApiTokenRow | undefined> {
  const [row] = await db
    .select()
    .from(apiTokens)
    .where(and(eq(apiTokens.id, id), isNull(apiTokens.revokedAt)));
  return row;
}

/** Every token, oldest first: for `hsm-ca token list` and GET /api/v1/tokens (which show no hash). */
export async function listApiTokenRows(db: Database): Promise<ApiTokenRow[]> {
  return db.select().from(apiTokens).orderBy(asc(apiTokens.createdAt), asc(apiTokens.id));
}

export async function apiTokenById(db: Database, id: string): Promise<ApiTokenRow | undefined> {
  const [row] = await db.select().from(apiTokens).where(eq(apiTokens.id, id));
  return row;
}

/** active -> revoked, once: undefined when the token was revoked already (or does not exist). */
export async function revokeApiTokenRow(db: Database, id: string, at: Date): Promise<ApiTokenRow | undefined> {
  const [row] = await db
    .update(apiTokens)
    .set({ revokedAt: at })
    .where(and(eq(apiTokens.id, id), isNull(apiTokens.revokedAt)))
    .returning();
  return row;
}
