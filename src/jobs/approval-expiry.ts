import { expireApprovalRequestsNow } from "../approvals/requests.ts";
import type { Database } from "../store/database.ts";
import type { Job } from "./job.ts";

/** Every five minutes, on the leader: pending approval requests past their expiry become expired (and say so in the audit log). */
export function approvalExpiryJob(db: Database): Job {
  return {
    name: "approval-expiry",
    runsOn: "leader",
    schedule: { cron: "*/5 * * * *" },
    failure: "approval request expiry failed",
    run: async () => {
      await expireApprovalRequestsNow({ db, now: () => new Date() });
    },
  };
}
