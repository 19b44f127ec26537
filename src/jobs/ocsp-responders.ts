import type { OcspService } from "../revocation/ocsp-service.ts";
import type { Job } from "./job.ts";

/**
 * Every 10 s, in every replica: a delegated responder certificate with a
 * third of its life left is replaced (or the newer one another replica made
 * is loaded), so that no replica answers with an expiring responder.
 */
export function ocspRespondersJob(ocsp: Pick<OcspService, "renewRespondersIfDue">): Job {
  return {
    name: "ocsp-responders",
    runsOn: "every-replica",
    schedule: { everyMs: 10_000 },
    actor: "system:revocation",
    failure: "cannot renew the OCSP responders",
    run: () => ocsp.renewRespondersIfDue(),
  };
}
