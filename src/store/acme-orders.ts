import { and, asc, count, eq, gt, inArray, lt, notInArray, sql } from "drizzle-orm";
import type { Database } from "./database.ts";
import { acmeAuthorizations, acmeChallenges, acmeOrders } from "./schema.ts";

export type OrderRow = typeof acmeOrders.$inferSelect;
export type AuthorizationRow = typeof acmeAuthorizations.$inferSelect;
export type ChallengeRow = typeof acmeChallenges.$inferSelect;

export interface NewOrder {
  order: typeof acmeOrders.$inferInsert;
  authorizations: Array<{ authorization: typeof acmeAuthorizations.$inferInsert; challenges: Array<typeof acmeChallenges.$inferInsert> }>;
}

/** An order with its authorizations and challenges, all or nothing. */
export async function insertOrder(db: Database, n: NewOrder): Promise<OrderRow> {
  return db.transaction(async (tx) => {
    const [order] = await tx.insert(acmeOrders).values(n.order).returning();
    for (const a of n.authorizations) {
      await tx.insert(acmeAuthorizations).values(a.authorization);
      if (a.challenges.length) await tx.insert(acmeChallenges).values(a.challenges);
    }
    return order!;
  });
}

export async function orderById(db: Database, id: string): Promise<OrderRow | undefined> {
  const [row] = await db.select().from(acmeOrders).where(eq(acmeOrders.id, id));
  return row;
}

export async function authorizationsOfOrder(db: Database, orderId: string): Promise<AuthorizationRow[]> {
  return db.select().from(acmeAuthorizations).where(eq(acmeAuthorizations.orderId, orderId)).orderBy(asc(acmeAuthorizations.createdAt), asc(acmeAuthorizations.id));
}

export async function authorizationById(db: Database, id: string): Promise<AuthorizationRow | undefined> {
  const [row] = await db.select().from(acmeAuthorizations).where(eq(acmeAuthorizations.id, id));
  return row;
}

export async function challengesOf(db: Database, authorizationId: string): Promise<ChallengeRow[]> {
  return db.select().from(acmeChallenges).where(eq(acmeChallenges.authorizationId, authorizationId)).orderBy(asc(acmeChallenges.type));
}

export async function challengeById(db: Database, id: string): Promise<ChallengeRow | undefined> {
  const [row] = await db.select().from(acmeChallenges).where(eq(acmeChallenges.id, id));
  return row;
}

/** pending -> processing, once: false when another request started it already. */
export async function startChallenge(db: Database, id: string): Promise<boolean> {
  const rows = await db
    .update(acmeChallenges)
    .set({ status: "processing" })
    .where(and(eq(acmeChallenges.id, id), eq(acmeChallenges.status, "pending")))
    .returning({ id: acmeChallenges.id });
  return rows.length === 1;
}

export async function updateChallenge(db: Database, id: string, changes: Partial<Pick<ChallengeRow, "status" | "validated" | "error">>): Promise<void> {
  await db.update(acmeChallenges).set(changes).where(eq(acmeChallenges.id, id));
}

export async function updateAuthorization(db: Database, id: string, changes: Partial<Pick<AuthorizationRow, "status">>): Promise<void> {
  await db.update(acmeAuthorizations).set(changes).where(eq(acmeAuthorizations.id, id));
}

/**
 * Runs fn in a transaction that holds the order's row lock: the writes that
 * make an authorization valid and its order ready become visible together
 * (a client that sees the authorization valid finds the order ready), and
 * validations of one order's authorizations take turns.
 */
export async function withOrderLocked<T>(db: Database, orderId: string, fn: (tx: Database) => Promise<T>): Promise<T> {
  return db.transaction(async (txRaw) => {
    const tx = txRaw as unknown as Database;
    await tx.select({ id: acmeOrders.id }).from(acmeOrders).where(eq(acmeOrders.id, orderId)).for("update");
    return fn(tx);
  });
}

export async function updateOrder(
  db: Database,
  id: string,
  changes: Partial<Pick<OrderRow, "status" | "error" | "certificateSerial">>,
  onlyIfStatus?: OrderRow["status"],
): Promise<OrderRow | undefined> {
  const where = onlyIfStatus ? and(eq(acmeOrders.id, id), eq(acmeOrders.status, onlyIfStatus)) : eq(acmeOrders.id, id);
  const [row] = await db.update(acmeOrders).set(changes).where(where).returning();
  return row;
}

export async function ordersByAccountSince(db: Database, accountId: string, since: Date): Promise<number> {
  const [row] = await db
    .select({ n: count() })
    .from(acmeOrders)
    .where(and(eq(acmeOrders.accountId, accountId), gt(acmeOrders.createdAt, since)));
  return row?.n ?? 0;
}

/** Orders of this directory, by any account, that asked for the identifier since then. */
export async function authorizationsForIdentifierSince(db: Database, directory: string, value: string, since: Date): Promise<number> {
  const [row] = await db
    .select({ n: count() })
    .from(acmeAuthorizations)
    .innerJoin(acmeOrders, eq(acmeOrders.id, acmeAuthorizations.orderId))
    .where(and(eq(acmeOrders.directory, directory), eq(acmeAuthorizations.identifierValue, value), gt(acmeAuthorizations.createdAt, since)));
  return row?.n ?? 0;
}

/** Did this account prove control of every one of these identifiers (a valid, unexpired authorization)? */
export async function accountHoldsAuthorizations(db: Database, accountId: string, values: string[], now: Date): Promise<boolean> {
  if (values.length === 0) return false;
  const rows = await db
    .selectDistinct({ value: acmeAuthorizations.identifierValue })
    .from(acmeAuthorizations)
    .where(
      and(
        eq(acmeAuthorizations.accountId, accountId),
        eq(acmeAuthorizations.status, "valid"),
        gt(acmeAuthorizations.expiresAt, now),
        inArray(acmeAuthorizations.identifierValue, values),
      ),
    );
  return rows.length === new Set(values).size;
}

/**
 * Expiry and clean-up: pending work past its expiry becomes invalid/expired;
 * orders (with their authorizations and challenges) are deleted a retention
 * period after they expired. Certificates are never deleted.
 */
export async function expireAndPurge(db: Database, now: Date, retentionMs: number): Promise<{ expired: number; purged: number }> {
  const expiredAuthz = await db
    .update(acmeAuthorizations)
    .set({ status: "expired" })
    .where(and(lt(acmeAuthorizations.expiresAt, now), inArray(acmeAuthorizations.status, ["pending", "valid"])))
    .returning({ id: acmeAuthorizations.id });
  const expiredOrders = await db
    .update(acmeOrders)
    .set({ status: "invalid", error: sql`coalesce(${acmeOrders.error}, '{"type":"urn:ietf:params:acme:error:malformed","detail":"the order expired","status":403}'::jsonb)` })
    .where(and(lt(acmeOrders.expiresAt, now), notInArray(acmeOrders.status, ["valid", "invalid"])))
    .returning({ id: acmeOrders.id });
  const purged = await db
    .delete(acmeOrders)
    .where(lt(acmeOrders.expiresAt, new Date(now.getTime() - retentionMs)))
    .returning({ id: acmeOrders.id });
  return { expired: expiredAuthz.length + expiredOrders.length, purged: purged.length };
}

export async function ordersReplacing(db: Database, certId: string): Promise<OrderRow[]> {
  return db.select().from(acmeOrders).where(eq(acmeOrders.replaces, certId));
}

export async function orderIdsOfAccount(db: Database, accountId: string, limit = 1000): Promise<string[]> {
  const rows = await db
    .select({ id: acmeOrders.id })
    .from(acmeOrders)
    .where(and(eq(acmeOrders.accountId, accountId), inArray(acmeOrders.status, ["pending", "ready", "processing", "valid"])))
    .orderBy(asc(acmeOrders.createdAt))
    .limit(limit);
  return rows.map((r) => r.id);
}
