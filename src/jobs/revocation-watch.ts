import type { RevocationWatcher } from "../revocation/revocation-watcher.ts";
import type { Job } from "./job.ts";

/**
 * Every second, in every replica: new revocations in the database, whoever
 * made them, evict this process's cached OCSP answers, reload its issuer
 * when a CA was revoked, and (on the leader) republish the CRLs concerned.
 */
export function revocationWatchJob(watcher: Pick<RevocationWatcher, "poll">): Job {
  return {
    name: "revocation-watch",
    runsOn: "every-replica",
    schedule: { everyMs: 1_000 },
    actor: "system:revocation",
    failure: "cannot poll for revocations",
    run: () => watcher.poll(),
  };
}
