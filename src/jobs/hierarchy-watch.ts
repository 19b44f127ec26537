import type { Logger } from "pino";
import { activeCa } from "../store/cas.ts";
import type { Database } from "../store/database.ts";
import type { Job } from "./job.ts";

/** How often every replica checks whether another process rotated the intermediate. */
const HIERARCHY_POLL_MS = 2_000;

/**
 * Every 2 s, in every replica: rotation is done by the leader, by `hsm-ca
 * rotate` or by an approval; each process notices a new active
 * intermediate here and switches to it without a restart.
 */
export function hierarchyWatchJob(deps: {
  db: Database;
  log: Logger;
  /** The intermediate this process issues from now. */
  issuingCaId(): number | undefined;
  /** Reloads the issuer (and the OCSP responders). */
  reload(): Promise<void>;
  /** Publishes the new intermediate's first CRLs (on the leader; a no-op elsewhere). */
  publishCrls(): Promise<void>;
  /** Whether the roots or the chains changed without a rotation (a root rollover, retire-root). */
  chainsChanged?(): Promise<boolean>;
}): Job & { switchIfRotated(): Promise<void> } {
  const switchIfRotated = async () => {
    const active = await activeCa(deps.db, "intermediate");
    if (active && active.id !== deps.issuingCaId()) {
      await deps.reload();
      await deps.publishCrls();
      deps.log.info({ ca: active.id, subject: active.subject }, "issuing from a new intermediate");
    } else if (await deps.chainsChanged?.()) {
      await deps.reload();
      await deps.publishCrls();
      deps.log.info("the roots changed (root rollover): serving the new chains");
    }
  };
  return {
    name: "hierarchy-watch",
    runsOn: "every-replica",
    schedule: { everyMs: HIERARCHY_POLL_MS },
    actor: "system:rotation",
    failure: "cannot check the hierarchy",
    run: switchIfRotated,
    switchIfRotated,
  };
}
