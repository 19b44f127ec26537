import type { AuditLog } from "../audit/audit-log.ts";
import type { Job } from "./job.ts";

/**
 * Every HSM_CA_AUDIT_CHECKPOINT_INTERVAL, on the leader: writes the pending
 * audit entries and signs the chain head with the audit key. The audit
 * lock keeps replicas in turn; each replica still signs a last checkpoint
 * when it stops (AuditLog.stop).
 */
export function auditCheckpointJob(audit: Pick<AuditLog, "checkpoint">, everyMs: number): Job {
  return {
    name: "audit-checkpoint",
    runsOn: "leader",
    schedule: { everyMs },
    // The audit log says why a checkpoint failed, in its own words.
    run: async () => {
      await audit.checkpoint({ throwOnFailure: true });
    },
  };
}
