import type { CrlPublisher } from "../revocation/crl-publisher.ts";
import type { Job } from "./job.ts";

export const CRL_PUBLISHING_JOB = "crl-publishing";

/**
 * Every minute, on the leader (and before a first replica serves): for
 * every CA, a full CRL past half its life is published again, else a delta
 * CRL past half its life. A revocation republishes at once besides (the
 * revocation watch). Replicas that publish at once during a change of
 * leader are safe: CRL numbers come from one sequence and a stored CRL is
 * only ever replaced by a higher-numbered one.
 */
export function crlPublishingJob(crls: Pick<CrlPublisher, "publishDue">): Job {
  return {
    name: CRL_PUBLISHING_JOB,
    runsOn: "leader",
    schedule: { cron: "* * * * *" },
    startup: "wait",
    actor: "system:revocation",
    failure: "scheduled CRL publication failed",
    run: () => crls.publishDue(),
  };
}
