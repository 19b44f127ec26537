import { recordInvalidChallenge, recordValidChallenge, type AuthorizationRow, type ChallengeRow } from "../store/acme-orders.ts";
import type { ProblemJson } from "../store/schema.ts";
import type { AcmeContext } from "./context.ts";
import { jwkThumbprint, type PublicJwk } from "./jwk.ts";
import { ACME_ERRORS, ACME_ERROR_PREFIX } from "./problem.ts";
import { validateChallenge } from "./validation/index.ts";

/** What a validation needs, as the challenge request read it: nothing is read again. */
export interface ValidationJob {
  challenge: ChallengeRow;
  authz: AuthorizationRow;
  /** How many authorizations the order has. */
  orderAuthorizations: number;
  /** The account's key (the one that signed the challenge request): the key authorization's thumbprint. */
  accountKey: PublicJwk;
}

/** How a validation ended, as recorded: what the challenge now says. */
export type ValidationOutcome = { status: "valid"; validated: Date } | { status: "invalid"; error: ProblemJson };

/**
 * Runs challenge validations in the background (the client polls), and
 * moves challenge, authorization and order on: valid -> the order becomes
 * ready once every authorization is; invalid -> all three become invalid.
 * Each outcome is written at once (src/store/acme-orders.ts
 * recordValidChallenge: a client that sees the authorization valid finds
 * the order ready).
 */
export class ValidationRunner {
  private readonly running = new Set<Promise<unknown>>();

  constructor(private readonly ctx: AcmeContext) {}

  /** Starts a validation; resolves with its outcome once recorded (undefined if it crashed), never rejects. */
  start(job: ValidationJob): Promise<ValidationOutcome | undefined> {
    const p = this.validate(job).catch((err: Error) => {
      this.ctx.log.error({ challenge: job.challenge.id, err: err.message }, "challenge validation crashed");
      return undefined;
    });
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
    return p;
  }

  /** Waits for validations in flight, e.g. before the database closes. */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.running]);
  }

  private async validate({ challenge: ch, authz, orderAuthorizations, accountKey }: ValidationJob): Promise<ValidationOutcome> {
    const { db, log } = this.ctx;
    const keyAuthorization = `${ch.token}.${jwkThumbprint(accountKey)}`;
    const result = await validateChallenge(
      ch.type,
      { type: authz.identifierType, value: authz.identifierValue },
      ch.token,
      keyAuthorization,
      this.ctx.validation,
    );
    const target = { challengeId: ch.id, authorizationId: authz.id, orderId: authz.orderId, orderAuthorizations };
    if (result.ok) {
      const validated = this.ctx.now();
      await recordValidChallenge(db, target, validated);
      log.info({ challenge: ch.id, type: ch.type, identifier: authz.identifierValue }, "ACME challenge valid");
      return { status: "valid", validated };
    }
    const error = { type: ACME_ERROR_PREFIX + result.error.type, detail: result.error.detail, status: ACME_ERRORS[result.error.type] };
    await recordInvalidChallenge(db, target, error, { ...error, detail: `${authz.identifierValue}: ${error.detail}` });
    log.info({ challenge: ch.id, type: ch.type, identifier: authz.identifierValue, error: result.error }, "ACME challenge invalid");
    return { status: "invalid", error };
  }
}
