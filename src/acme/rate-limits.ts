import { describeRate, rateLimitsOf } from "../policy/rate-limit.ts";
import { parseDuration } from "../policy/duration.ts";
import type { AcmeProfile } from "../policy/acme-profile-schema.ts";
import { orderRateCounts } from "../store/acme-orders.ts";
import type { Database } from "../store/database.ts";
import type { AcmeContext } from "./context.ts";
import { AcmeProblem } from "./problem.ts";

/**
 * Per-account and per-identifier limits on new orders, counted from the
 * orders and authorizations the database already holds (one query): every
 * replica sees the same counts and there is no extra state to keep.
 */
export async function checkOrderRateLimits(
  db: Database,
  profile: AcmeProfile,
  accountId: string,
  identifiers: Array<{ value: string }>,
  now: Date,
): Promise<void> {
  const perAccount = profile.rateLimits.newOrdersPerAccount;
  const accountWindow = parseDuration(perAccount.window)!;
  const perIdentifier = profile.rateLimits.ordersPerIdentifier;
  const idWindow = parseDuration(perIdentifier.window)!;
  const counts = await orderRateCounts(
    db,
    profile.name,
    accountId,
    new Date(now.getTime() - accountWindow),
    identifiers.map((id) => id.value),
    new Date(now.getTime() - idWindow),
  );
  const orders = counts.orders;
  if (orders >= perAccount.count) {
    throw new AcmeProblem("rateLimited", `this account created ${orders} orders in the last ${perAccount.window} (limit ${perAccount.count})`, {
      retryAfterSeconds: Math.ceil(accountWindow / 1000),
    });
  }
  for (const [i, id] of identifiers.entries()) {
    const n = counts.perIdentifier[i]!;
    if (n >= perIdentifier.count) {
      throw new AcmeProblem("rateLimited", `${id.value} was ordered ${n} times in the last ${perIdentifier.window} (limit ${perIdentifier.count})`, {
        retryAfterSeconds: Math.ceil(idWindow / 1000),
      });
    }
  }
}

/**
 * Requests per account per second (HSM_CA_ACME_RATE_LIMIT_PER_ACCOUNT), in
 * memory: counted once the request is known to come from the account (its
 * signature verified), refused with 429 rateLimited and Retry-After.
 */
export function limitAccountRate(ctx: AcmeContext, accountId: string): void {
  const limiter = rateLimitsOf(ctx).perAcmeAccount;
  const wait = limiter.take(accountId);
  if (wait > 0) {
    ctx.metrics?.rateLimited.inc({ limiter: "acme_account" });
    throw new AcmeProblem("rateLimited", `this account sent more requests than its limit of ${describeRate(limiter.spec)}; retry in ${wait} s`, {
      retryAfterSeconds: wait,
    });
  }
}
