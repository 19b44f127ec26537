import { and, asc, count, eq, getTableColumns, gt, inArray, lt, notInArray, sql, type SQL } from "drizzle-orm";
import type { Database } from "./database.ts";
import { perDatabase } from "./prepared.ts";
import { acmeAuthorizations, acmeChallenges, acmeOrders, type ProblemJson } from "./schema.ts";

export type OrderRow = typeof acmeOrders.$inferSelect;
export type AuthorizationRow = typeof acmeAuthorizations.$inferSelect;
export type ChallengeRow = typeof acmeChallenges.$inferSelect;

export interface NewOrder {
  order: typeof acmeOrders.$inferInsert;
  authorizations: Array<{ authorization: typeof acmeAuthorizations.$inferInsert; challenges: Array<typeof acmeChallenges.$inferInsert> }>;
}

/**
 * An order with its authorizations and challenges, in one statement (so all
 * or nothing, and one round trip); with the ids of its authorizations in
 * the order orderWithAuthorizationIds lists them.
 */
export async function insertOrder(db: Database, n: NewOrder): Promise<{ order: OrderRow; authorizationIds: string[] }> {
  const order = db.$with("new_order").as(db.insert(acmeOrders).values(n.order).returning());
  const authz = db
    .$with("new_authz")
    .as(db.insert(acmeAuthorizations).values(n.authorizations.map((a) => a.authorization)).returning({ id: acmeAuthorizations.id, createdAt: acmeAuthorizations.createdAt }));
  // Every authorization has at least one challenge. The foreign keys are checked at the statement's end, when all rows are in.
  const challenges = db.$with("new_challenges").as(db.insert(acmeChallenges).values(n.authorizations.flatMap((a) => a.challenges)).returning({ id: acmeChallenges.id }));
  const rows = await db
    .with(order, authz, challenges)
    .select({
      // The order's columns as returned by its insert (drizzle selects a CTE's columns one by one, not the CTE as a whole).
      order: Object.fromEntries(Object.keys(getTableColumns(acmeOrders)).map((k) => [k, order[k as keyof typeof order]])) as unknown as typeof acmeOrders._.columns,
      authzId: authz.id,
      challenges: sql<number>`(select count(*) from ${challenges})`.mapWith(Number),
    })
    .from(order)
    .innerJoin(authz, sql`true`)
    .orderBy(asc(authz.createdAt), asc(authz.id));
  return { order: rows[0]!.order, authorizationIds: rows.map((r) => r.authzId) };
}

/** An order with the ids of its authorizations, in one query. */
export async function orderWithAuthorizationIds(db: Database, id: string): Promise<{ order: OrderRow; authorizationIds: string[] } | undefined> {
  const rows = await orderWithAuthorizationIdsQuery(db).execute({ id });
  if (!rows.length) return undefined;
  return { order: rows[0]!.order, authorizationIds: rows.flatMap((r) => (r.authzId === null ? [] : [r.authzId])) };
}

/** An authorization with its challenges, in one query. */
export async function authorizationWithChallenges(db: Database, id: string): Promise<{ authz: AuthorizationRow; challenges: ChallengeRow[] } | undefined> {
  const rows = await authorizationWithChallengesQuery(db).execute({ id });
  if (!rows.length) return undefined;
  return { authz: rows[0]!.authz, challenges: rows.flatMap((r) => (r.challenge ? [r.challenge] : [])) };
}

/** A challenge with its authorization and how many authorizations that one's order has, in one query. */
export async function challengeWithAuthorization(
  db: Database,
  id: string,
): Promise<{ challenge: ChallengeRow; authz: AuthorizationRow; orderAuthorizations: number } | undefined> {
  const [row] = await challengeWithAuthorizationQuery(db).execute({ id });
  return row;
}

export async function orderById(db: Database, id: string): Promise<OrderRow | undefined> {
  const [row] = await orderByIdQuery(db).execute({ id });
  return row;
}

// The statements every ACME request reads with, prepared (src/store/prepared.ts).
const orderWithAuthorizationIdsQuery = perDatabase((db) =>
  db
    .select({ order: acmeOrders, authzId: acmeAuthorizations.id })
    .from(acmeOrders)
    .leftJoin(acmeAuthorizations, eq(acmeAuthorizations.orderId, acmeOrders.id))
    .where(eq(acmeOrders.id, sql.placeholder("id")))
    .orderBy(asc(acmeAuthorizations.createdAt), asc(acmeAuthorizations.id))
    .prepare("acme_order_with_authorization_ids"),
);
const authorizationWithChallengesQuery = perDatabase((db) =>
  db
    .select({ authz: acmeAuthorizations, challenge: acmeChallenges })
    .from(acmeAuthorizations)
    .leftJoin(acmeChallenges, eq(acmeChallenges.authorizationId, acmeAuthorizations.id))
    .where(eq(acmeAuthorizations.id, sql.placeholder("id")))
    .orderBy(asc(acmeChallenges.type))
    .prepare("acme_authorization_with_challenges"),
);
const challengeWithAuthorizationQuery = perDatabase((db) =>
  db
    .select({
      challenge: acmeChallenges,
      authz: acmeAuthorizations,
      orderAuthorizations: sql<number>`(select count(*) from ${acmeAuthorizations} as sibling where sibling.order_id = ${acmeAuthorizations.orderId})`.mapWith(Number),
    })
    .from(acmeChallenges)
    .innerJoin(acmeAuthorizations, eq(acmeAuthorizations.id, acmeChallenges.authorizationId))
    .where(eq(acmeChallenges.id, sql.placeholder("id")))
    .prepare("acme_challenge_with_authorization"),
);
const orderByIdQuery = perDatabase((db) => db.select().from(acmeOrders).where(eq(acmeOrders.id, sql.placeholder("id"))).prepare("acme_order_by_id"));

/**
 * POST {} on a challenge, in one statement: pending -> processing when it
 * belongs to the account and its authorization is pending and unexpired.
 * The challenge as it now is, with what a validation needs; undefined when
 * nothing was started (read it with challengeWithAuthorization to say why).
 */
export async function startChallengeOf(
  db: Database,
  id: string,
  accountId: string,
  now: Date,
): Promise<{ challenge: ChallengeRow; authz: AuthorizationRow; orderAuthorizations: number } | undefined> {
  const [row] = await startChallengeQuery(db).execute({ id, accountId, now: now.toISOString() });
  return row;
}

const startChallengeQuery = perDatabase((db) =>
  db
    .update(acmeChallenges)
    .set({ status: "processing" })
    .from(acmeAuthorizations)
    .where(
      and(
        eq(acmeChallenges.id, sql.placeholder("id")),
        eq(acmeChallenges.status, "pending"),
        eq(acmeAuthorizations.id, acmeChallenges.authorizationId),
        eq(acmeAuthorizations.accountId, sql.placeholder("accountId")),
        eq(acmeAuthorizations.status, "pending"),
        sql`${acmeAuthorizations.expiresAt} > ${sql.placeholder("now")}::timestamptz`,
      ),
    )
    .returning({
      challenge: getTableColumns(acmeChallenges),
      authz: getTableColumns(acmeAuthorizations),
      // Qualified: drizzle leaves a returning column's table out, and "order_id" alone would be the sibling's.
      orderAuthorizations: sql<number>`(select count(*) from ${acmeAuthorizations} as sibling where sibling.order_id = ${acmeAuthorizations}.order_id)`.mapWith(Number),
    })
    .prepare("acme_start_challenge"),
);

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

/** Where a validation's outcome is written: the challenge, its authorization, that one's order. */
export interface ValidationTarget {
  challengeId: string;
  authorizationId: string;
  orderId: string;
  /** How many authorizations the order has (fixed when it is created). */
  orderAuthorizations: number;
}

/**
 * A valid challenge: it, its authorization and (once every authorization
 * of the order is valid) the order move on together, so that a client that
 * sees the authorization valid finds the order ready (finalize at once).
 * An order of one authorization: one statement. Several: a transaction
 * holding the order's row lock, so that validations of one order's
 * authorizations take turns and the last one sees the others' writes.
 */
export async function recordValidChallenge(db: Database, t: ValidationTarget, validated: Date): Promise<void> {
  const write = (tx: Database, othersValid: SQL) => {
    const ch = tx.$with("valid_challenge").as(tx.update(acmeChallenges).set({ status: "valid", validated }).where(eq(acmeChallenges.id, t.challengeId)).returning({ id: acmeChallenges.id }));
    const az = tx.$with("valid_authz").as(tx.update(acmeAuthorizations).set({ status: "valid" }).where(eq(acmeAuthorizations.id, t.authorizationId)).returning({ id: acmeAuthorizations.id }));
    return tx
      .with(ch, az)
      .update(acmeOrders)
      .set({ status: "ready" })
      .where(and(eq(acmeOrders.id, t.orderId), eq(acmeOrders.status, "pending"), othersValid));
  };
  if (t.orderAuthorizations <= 1) {
    await write(db, sql`true`);
    return;
  }
  await withOrderLocked(db, t.orderId, async (tx) => {
    // After the lock: this statement's snapshot holds every other validation of the order that finished.
    await write(
      tx,
      sql`not exists (select 1 from ${acmeAuthorizations} as other where other.order_id = ${t.orderId} and other.id <> ${t.authorizationId} and other.status <> 'valid')`,
    );
  });
}

/**
 * An invalid challenge: it, its authorization and the order (while pending)
 * become invalid together, in one statement. No lock is needed: an order
 * with an invalid authorization never becomes ready.
 */
export async function recordInvalidChallenge(db: Database, t: ValidationTarget, error: ProblemJson, orderError: ProblemJson): Promise<void> {
  const ch = db.$with("invalid_challenge").as(db.update(acmeChallenges).set({ status: "invalid", error }).where(eq(acmeChallenges.id, t.challengeId)).returning({ id: acmeChallenges.id }));
  const az = db.$with("invalid_authz").as(db.update(acmeAuthorizations).set({ status: "invalid" }).where(eq(acmeAuthorizations.id, t.authorizationId)).returning({ id: acmeAuthorizations.id }));
  await db
    .with(ch, az)
    .update(acmeOrders)
    .set({ status: "invalid", error: orderError })
    .where(and(eq(acmeOrders.id, t.orderId), eq(acmeOrders.status, "pending")));
}

/**
 * finalize's ready -> processing, in one statement: only the account's
 * unexpired ready order whose identifiers are exactly `names` (as sets).
 * The order with its authorizations' ids; undefined when it did not move.
 */
export async function claimReadyOrder(
  db: Database,
  id: string,
  accountId: string,
  names: Array<{ type: string; value: string }>,
  now: Date,
): Promise<{ order: OrderRow; authorizationIds: string[] } | undefined> {
  const wanted = JSON.stringify(names);
  const [row] = await db
    .update(acmeOrders)
    .set({ status: "processing" })
    .where(
      and(
        eq(acmeOrders.id, id),
        eq(acmeOrders.accountId, accountId),
        eq(acmeOrders.status, "ready"),
        gt(acmeOrders.expiresAt, now),
        sql`${acmeOrders.identifiers} @> ${wanted}::jsonb and ${acmeOrders.identifiers} <@ ${wanted}::jsonb`,
      ),
    )
    .returning({
      order: getTableColumns(acmeOrders),
      // One string, not an array: drizzle's postgres.js and PGlite drivers hand arrays from sql`` back differently. Ids are base64url: no spaces.
      // Qualified: drizzle leaves a returning column's table out.
      authorizationIds: sql<string | null>`(select string_agg(a.id, ' ' order by a.created_at, a.id) from ${acmeAuthorizations} as a where a.order_id = ${acmeOrders}.id)`,
    });
  return row && { order: row.order, authorizationIds: row.authorizationIds ? row.authorizationIds.split(" ") : [] };
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

/**
 * The newOrder rate limits' counts, in one query: orders the account
 * created since accountSince, and for each identifier value, authorizations
 * of this directory's orders (any account's) that asked for it since idSince.
 */
export async function orderRateCounts(
  db: Database,
  directory: string,
  accountId: string,
  accountSince: Date,
  values: string[],
  idSince: Date,
): Promise<{ orders: number; perIdentifier: number[] }> {
  const ordersOfAccount = db
    .select({ n: count() })
    .from(acmeOrders)
    .where(and(eq(acmeOrders.accountId, accountId), gt(acmeOrders.createdAt, accountSince)));
  const ofIdentifier = (value: string) =>
    db
      .select({ n: count() })
      .from(acmeAuthorizations)
      .innerJoin(acmeOrders, eq(acmeOrders.id, acmeAuthorizations.orderId))
      .where(and(eq(acmeOrders.directory, directory), eq(acmeAuthorizations.identifierValue, value), gt(acmeAuthorizations.createdAt, idSince)));
  const fields: Record<string, SQL.Aliased<number>> = { orders: sql<number>`(${ordersOfAccount})`.mapWith(Number).as("orders") };
  values.forEach((v, i) => (fields[`id${i}`] = sql<number>`(${ofIdentifier(v)})`.mapWith(Number).as(`id${i}`)));
  const [row] = (await db.select(fields).from(sql`(select 1) as one`)) as Array<Record<string, number>>;
  return { orders: row!.orders!, perIdentifier: values.map((_, i) => row![`id${i}`]!) };
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
