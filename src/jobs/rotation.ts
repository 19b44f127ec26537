import type { Logger } from "pino";
import { rotateIntermediate, RotationError } from "../ceremony/rotate.ts";
import { rotationDueAt } from "../policy/rotation-rule.ts";
import type { Config } from "../config.ts";
import type { KeyManager } from "../hsm/key-manager.ts";
import type { RevocationUrls } from "../revocation/urls.ts";
import type { Database } from "../store/database.ts";
import { claimTick } from "../store/rotation-ticks.ts";
import type { Job } from "./job.ts";

/** The job of HSM_CA_ROTATION_SCHEDULE's ticks. */
export const ROTATION_SCHEDULE_JOB = "rotation-schedule";

/**
 * Rotates the intermediate without anyone having to remember: at each tick
 * of HSM_CA_ROTATION_SCHEDULE, and whenever less than
 * HSM_CA_ROTATION_REMAINING of its life is left (checked every minute).
 * The leader runs them; the database still decides, should two replicas
 * act during a change of leader: a tick is claimed once (rotation_ticks),
 * and the rule is checked again under the hierarchy lock, so a tick or a
 * due date leads to exactly one rotation.
 */
export function rotationJobs(deps: {
  db: Database;
  hsm: KeyManager;
  log: Logger;
  config: Config;
  urls: () => RevocationUrls;
  /** After a rotation here: switch this process to the new intermediate at once. */
  onRotated: () => Promise<void>;
}): Job[] {
  const { db, hsm, log, config } = deps;
  const rotate = async (why: string, proceed: Parameters<typeof rotateIntermediate>[5]) => {
    try {
      const done = await rotateIntermediate(hsm, db, config.hierarchy, deps.urls(), why, proceed);
      if (!done) return;
      if (done.awaiting) {
        // Under an external root: prepared once, then the rule keeps firing against the waiting key and nothing is made.
        if (done.prepared) log.warn({ pending: done.awaiting.id, subject: done.awaiting.subject, why }, "the next intermediate's key and CSR wait for the external root's signature (hsm-ca ceremony pending-csr)");
        return;
      }
      log.info({ ca: done.row.id, subject: done.row.subject, why }, "rotated the issuing intermediate");
      await deps.onRotated();
    } catch (err) {
      const level = err instanceof RotationError ? "warn" : "error";
      log[level]({ err: (err as Error).message, why }, "intermediate rotation failed");
      throw err;
    }
  };
  const jobs: Job[] = [];
  if (config.rotation.schedule) {
    jobs.push({
      name: ROTATION_SCHEDULE_JOB,
      runsOn: "leader",
      schedule: { cron: config.rotation.schedule },
      actor: "system:rotation",
      // Claimed in the rotation's own transaction: another replica's claim of this tick means skip.
      run: (tick) => rotate(`scheduled tick ${tick.toISOString()}`, (tx) => claimTick(tx, tick)),
    });
  }
  const remaining = config.rotation.remaining;
  if (remaining) {
    jobs.push({
      name: "rotation-by-remaining-life",
      runsOn: "leader",
      schedule: { cron: "* * * * *" },
      actor: "system:rotation",
      run: () => rotate("less than the configured share of its lifetime remains", async (_tx, plan) => Date.now() >= rotationDueAt(plan.current, remaining).getTime()),
    });
  }
  return jobs;
}
