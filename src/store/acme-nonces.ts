import { and, eq, gt, lt, sql } from "drizzle-orm";
import type { AcmeAccountRow } from "./acme-accounts.ts";
import type { Database } from "./database.ts";
import { perDatabase } from "./prepared.ts";
import { acmeAccounts, acmeNonces } from "./schema.ts";

export async function insertNonce(db: Database, value: string, expiresAt: Date): Promise<void> {
  await db.insert(acmeNonces).values({ value, expiresAt });
}

/** True exactly once per issued, unexpired nonce: the delete is the "use". */
export async function consumeNonce(db: Database, value: string, now: Date): Promise<boolean> {
  const rows = await db
    .delete(acmeNonces)
    .where(and(eq(acmeNonces.value, value), gt(acmeNonces.expiresAt, now)))
    .returning({ value: acmeNonces.value });
  return rows.length === 1;
}

/**
 * What every signed ACME request needs from the database, in one statement
 * (one round trip instead of three): use the request's nonce (the delete is
 * the "use", as consumeNonce), store the nonce its response will carry, and
 * read the signing account (kid requests; none for jwk ones).
 * `used` undefined: the request has no well-formed nonce, nothing is used.
 */
export async function useNonceAndReadAccount(
  db: Database,
  used: string | undefined,
  fresh: { value: string; expiresAt: Date },
  now: Date,
  accountId: string | undefined,
): Promise<{ nonceUsed: boolean; account: AcmeAccountRow | undefined }> {
  // "" is never a nonce (nonces are 22 base64url characters) nor an account id: it matches nothing.
  const [row] = await nonceAndAccountQuery(db).execute({
    used: used ?? "",
    now: now.toISOString(),
    fresh: fresh.value,
    expiresAt: fresh.expiresAt.toISOString(),
    accountId: accountId ?? "",
  });
  return { nonceUsed: row?.spent === 1, account: row?.account ?? undefined };
}

/**
 * The statement above, built once per database handle with placeholders: it
 * runs for every signed ACME request, and building it through the query
 * builder each time cost more than the database's own work (the ACME
 * section of docs/benchmarks.md).
 */
function buildNonceAndAccountQuery(db: Database) {
  const spent = db
    .$with("spent")
    .as(
      db
        .delete(acmeNonces)
        .where(and(eq(acmeNonces.value, sql.placeholder("used")), sql`${acmeNonces.expiresAt} > ${sql.placeholder("now")}::timestamptz`))
        .returning({ value: acmeNonces.value }),
    );
  const issued = db
    .$with("issued")
    .as(db.insert(acmeNonces).values({ value: sql.placeholder("fresh"), expiresAt: sql`${sql.placeholder("expiresAt")}::timestamptz` }).returning({ value: acmeNonces.value }));
  // Data-modifying CTEs run exactly once whether or not the main query reads them.
  return db
    .with(spent, issued)
    .select({ spent: sql<number>`(select count(*) from ${spent})`.mapWith(Number), account: acmeAccounts })
    .from(sql`(select 1) as one`)
    .leftJoin(acmeAccounts, eq(acmeAccounts.id, sql.placeholder("accountId")))
    .prepare("acme_nonce_and_account");
}

const nonceAndAccountQuery = perDatabase(buildNonceAndAccountQuery);

export async function deleteExpiredNonces(db: Database, now: Date): Promise<number> {
  const rows = await db.delete(acmeNonces).where(lt(acmeNonces.expiresAt, now)).returning({ value: acmeNonces.value });
  return rows.length;
}
