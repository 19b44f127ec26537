import {
  authorizationById,
  authorizationsOfOrder,
  challengeById,
  orderById,
  updateAuthorization,
  updateChallenge,
  updateOrder,
  withOrderLocked,
} from "../store/acme-orders.ts";
import { accountById } from "../store/acme-accounts.ts";
import type { AcmeContext } from "./context.ts";
import { jwkThumbprint, publicJwk } from "./jwk.ts";
import { ACME_ERRORS, ACME_ERROR_PREFIX } from "./problem.ts";
import { validateChallenge } from "./validation/index.ts";

/**
 * Runs challenge validations in the background (the client polls), and
 * moves challenge, authorization and order on: valid -> the order becomes
 * ready once every authorization is; invalid -> all three become invalid.
 */
export class ValidationRunner {
  private readonly running = new Set<Promise<void>>();

  constructor(private readonly ctx: AcmeContext) {}

  start(challengeId: string): void {
    const p = this.validate(challengeId).catch((err: Error) => {
      this.ctx.log.error({ challenge: challengeId, err: err.message }, "challenge validation crashed");
    });
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
  }

  /** Waits for validations in flight, e.g. before the database closes. */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.running]);
  }

  private async validate(challengeId: string): Promise<void> {
    const { db, log } = this.ctx;
    const ch = await challengeById(db, challengeId);
    if (!ch) return;
    const authz = await authorizationById(db, ch.authorizationId);
    const account = authz && (await accountById(db, authz.accountId));
    if (!authz || !account) return;
    const keyAuthorization = `${ch.token}.${jwkThumbprint(publicJwk(account.jwk))}`;
    const result = await validateChallenge(
      ch.type,
      { type: authz.identifierType, value: authz.identifierValue },
      ch.token,
      keyAuthorization,
      this.ctx.validation,
    );
    const now = this.ctx.now();
    if (result.ok) {
      await withOrderLocked(db, authz.orderId, async (tx) => {
        await updateChallenge(tx, ch.id, { status: "valid", validated: now });
        await updateAuthorization(tx, authz.id, { status: "valid" });
        const all = await authorizationsOfOrder(tx, authz.orderId);
        if (all.every((a) => a.status === "valid")) await updateOrder(tx, authz.orderId, { status: "ready" }, "pending");
      });
      log.info({ challenge: ch.id, type: ch.type, identifier: authz.identifierValue }, "ACME challenge valid");
      return;
    }
    const error = { type: ACME_ERROR_PREFIX + result.error.type, detail: result.error.detail, status: ACME_ERRORS[result.error.type] };
    await withOrderLocked(db, authz.orderId, async (tx) => {
      await updateChallenge(tx, ch.id, { status: "invalid", error });
      await updateAuthorization(tx, authz.id, { status: "invalid" });
      const order = await orderById(tx, authz.orderId);
      if (order && order.status === "pending") {
        await updateOrder(tx, order.id, {
          status: "invalid",
          error: { ...error, detail: `${authz.identifierValue}: ${error.detail}` },
        });
      }
    });
    log.info({ challenge: ch.id, type: ch.type, identifier: authz.identifierValue, error: result.error }, "ACME challenge invalid");
  }
}
