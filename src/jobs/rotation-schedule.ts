import cron, { type ScheduledTask } from "node-cron";
import type { Logger } from "pino";
import { rotateIntermediate, RotationError } from "../ceremony/rotate.ts";
import { rotationDueAt } from "../policy/rotation-rule.ts";
import type { Config } from "../config.ts";
import type { KeyManager } from "../hsm/key-manager.ts";
import type { RevocationUrls } from "../revocation/urls.ts";
import type { Database } from "../store/database.ts";
import { claimTick } from "../store/rotation-ticks.ts";

export interface RotationSchedule {
  /** The next scheduled tick, if a cron schedule is set. */
  nextTick(): Date | undefined;
  stop(): void;
}

/**
 * Rotates the intermediate without anyone having to remember: at each tick
 * of HSM_CA_ROTATION_SCHEDULE, and whenever less than
 * HSM_CA_ROTATION_REMAINING of its life is left (checked every minute). Every
 * replica runs the schedule; the database decides which one acts: a tick is
 * claimed once (rotation_ticks), and the rule is checked again under the
 * hierarchy lock, so a tick or a due date leads to exactly one rotation.
 */
export function scheduleRotation(deps: {
  db: Database;
  hsm: KeyManager;
  log: Logger;
  config: Config;
  urls: () => RevocationUrls;
  onRotated: () => Promise<void>;
}): RotationSchedule {
  const { db, hsm, log, config } = deps;
  const rotate = async (why: string, proceed: Parameters<typeof rotateIntermediate>[5]) => {
    try {
      const done = await rotateIntermediate(hsm, db, config.hierarchy, deps.urls(), why, proceed);
      if (!done) return;
      log.info({ ca: done.row.id, subject: done.row.subject, why }, "rotated the issuing intermediate");
      await deps.onRotated();
    } catch (err) {
      const level = err instanceof RotationError ? "warn" : "error";
      log[level]({ err: (err as Error).message, why }, "intermediate rotation failed");
    }
  };
  const tasks: ScheduledTask[] = [];
  if (config.rotation.schedule) {
    tasks.push(
      cron.schedule(config.rotation.schedule, (ctx) => {
        const tick = new Date(Math.floor(ctx.date.getTime() / 1000) * 1000);
        // Claimed in the rotation's own transaction: another replica's claim of this tick means skip.
        return rotate(`scheduled tick ${tick.toISOString()}`, (tx) => claimTick(tx, tick));
      }),
    );
  }
  const remaining = config.rotation.remaining;
  if (remaining) {
    tasks.push(
      cron.schedule("* * * * *", () =>
        rotate("less than the configured share of its lifetime remains", async (_tx, plan) => Date.now() >= rotationDueAt(plan.current, remaining).getTime()),
      ),
    );
  }
  return {
    nextTick: () => (config.rotation.schedule ? (tasks[0]?.getNextRun() ?? undefined) : undefined),
    stop: () => tasks.forEach((t) => void t.stop()),
  };
}
