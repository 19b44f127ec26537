import { destroyRetiredKeys, KEY_CLEANUP_ACTOR, type KeyCleanupDeps } from "../ceremony/destroy-retired-keys.ts";
import type { Job } from "./job.ts";

/**
 * Hourly (at minute 17), on the leader: destroys the keys of retired
 * intermediates whose last certificate has expired, or asks for approval
 * to (HSM_CA_CA_CHANGE_APPROVALS). The destruction itself runs under the
 * hierarchy lock, so a second replica finds nothing left to do.
 */
export function keyCleanupJob(deps: Omit<KeyCleanupDeps, "now">): Job {
  return {
    name: "key-cleanup",
    runsOn: "leader",
    schedule: { cron: "17 * * * *" },
    actor: KEY_CLEANUP_ACTOR,
    failure: "retired key clean-up failed",
    run: async () => {
      await destroyRetiredKeys({ ...deps, now: () => new Date() });
    },
  };
}
