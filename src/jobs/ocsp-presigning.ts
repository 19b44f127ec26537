import type { OcspService } from "../revocation/ocsp-service.ts";
import type { Job } from "./job.ts";

/**
 * Every 10 s, on the leader: signs OCSP responses for certificates without
 * a stored one, with one past half its life, or whose status changed,
 * paced at HSM_CA_OCSP_SIGN_RATE, and stores them for every replica.
 */
export function ocspPresigningJob(ocsp: Pick<OcspService, "refreshDue">): Job {
  return {
    name: "ocsp-presigning",
    runsOn: "leader",
    schedule: { everyMs: 10_000 },
    startup: "background",
    actor: "system:revocation",
    failure: "OCSP pre-signing failed",
    run: () => ocsp.refreshDue(),
  };
}
