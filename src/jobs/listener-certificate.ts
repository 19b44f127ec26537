import type https from "node:https";
import type { Logger } from "pino";
import { serverCertificateDue, type ServerCertificate } from "../issuance/server-certificate.ts";
import type { Job } from "./job.ts";

/**
 * Hourly, in every replica: each process has its own HTTPS listener and its
 * own certificate for it (issued at start), renewed here when due and
 * swapped in without dropping a connection.
 */
export function listenerCertificateJob(deps: {
  server: https.Server;
  /** The certificate the listener started with. */
  current: ServerCertificate;
  issue(): Promise<ServerCertificate>;
  log: Logger;
}): Job & { renew(now?: Date): Promise<boolean> } {
  let tls = deps.current;
  const renew = async (now = new Date()) => {
    if (!serverCertificateDue(tls, now)) return false;
    tls = await deps.issue();
    deps.server.setSecureContext({ key: tls.keyPem, cert: tls.certPem });
    deps.log.info({ notAfter: tls.notAfter.toISOString() }, "renewed the HTTPS certificate");
    return true;
  };
  return {
    name: "listener-certificate",
    runsOn: "every-replica",
    schedule: { everyMs: 3_600_000 },
    actor: "system:server-certificate",
    failure: "cannot renew the HTTPS certificate",
    run: async () => {
      await renew();
    },
    renew,
  };
}
