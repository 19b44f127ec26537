import { parseArgs } from "node:util";
import { readAnchor } from "../../audit/anchor.ts";
import { AUDIT_KEY_ALGORITHM } from "../../audit/checkpoint.ts";
import { coverageDeadline, verifyAuditLog } from "../../audit/verify.ts";
import { auditEntriesPage } from "../../store/audit.ts";
import { CliError, type CommandEnv } from "../command-env.ts";

export const auditUsage = `hsm-ca audit verify [--check-keys]
  Checks the audit log's hash chain and its signed checkpoints against the audit anchor on the HSM;
  prints OK with counts, or the first bad entry (edited, deleted, inserted or re-ordered), checkpoints
  missing or behind the anchor, or old entries no checkpoint covers, and exits 1. --check-keys also
  requires each checkpoint's key to be the audit key on the HSM (same label, same public key).
hsm-ca audit export [--since ISO-8601]
  Prints the audit log as JSON lines (one entry per line, seq order) for a SIEM: seq, at, kind,
  actor, subject, result, details, prev_hash, hash.`;

const PAGE = 1000;

export async function auditCommand(args: string[], env: CommandEnv): Promise<number> {
  const [what, ...rest] = args;
  switch (what) {
    case "verify": {
      const { values } = parseArgs({ args: rest, options: { "check-keys": { type: "boolean" } }, strict: true });
      const store = await env.store();
      await env.audit?.flush();
      // The anchor is what the database cannot rewrite: without the HSM there is nothing to hold the log to.
      const hsm = env.hsm();
      const anchor = readAnchor(hsm) ?? null;
      const result = await verifyAuditLog(store.db, {
        publicKeyOf: values["check-keys"] ? async (label) => (hsm.hasKey(label) ? Buffer.from(await hsm.publicKeySpki(label, AUDIT_KEY_ALGORITHM)) : undefined) : undefined,
        anchor,
        coveredBefore: coverageDeadline(env.config.audit.checkpointIntervalMs),
      });
      const counts =
        `${result.entries} entries${result.head ? ` (seq 1..${result.head.seq})` : ""}, ${result.checkpoints} signed checkpoints, ` +
        (anchor ? `HSM anchor at seq ${anchor.seq}` : "no HSM anchor yet");
      if (result.firstBad) {
        const b = result.firstBad;
        env.out(`first bad entry: seq ${b.seq} (${b.problem}): ${b.detail}`);
      }
      if (result.badCheckpoint) {
        const c = result.badCheckpoint;
        env.out(`bad checkpoint: #${c.id} at seq ${c.seq}: ${c.detail}`);
      }
      if (result.anchorProblem) env.out(`HSM audit anchor: ${result.anchorProblem}`);
      if (result.uncovered) {
        const u = result.uncovered;
        env.out(
          `not covered: seq ${u.seq} (recorded ${u.at.toISOString()}) and the entries after it are older than two checkpoint intervals, ` +
            "and no signed checkpoint covers them: the service signs one every HSM_CA_AUDIT_CHECKPOINT_INTERVAL; is it running and able to?",
        );
      }
      if (!result.ok) {
        env.err(`The audit log does NOT verify (${counts}).`);
        return 1;
      }
      env.out(`OK: ${counts}${result.head ? `; head ${result.head.hash}` : ""}`);
      return 0;
    }
    case "export": {
      const { values } = parseArgs({ args: rest, options: { since: { type: "string" } }, strict: true });
      const since = values.since === undefined ? undefined : new Date(values.since);
      if (since && (Number.isNaN(since.getTime()) || !/^\d{4}-\d{2}-\d{2}/.test(values.since!))) {
        throw new CliError(`--since "${values.since}" is not an ISO 8601 date or time`);
      }
      const store = await env.store();
      await env.audit?.flush();
      let after = Number.MIN_SAFE_INTEGER;
      for (;;) {
        const page = await auditEntriesPage(store.db, { afterSeq: after, since, limit: PAGE });
        for (const e of page) {
          env.out(
            JSON.stringify({
              seq: e.seq,
              at: e.at.toISOString(),
              kind: e.kind,
              actor: e.actor,
              subject: e.subject,
              result: e.result,
              details: e.details,
              prev_hash: e.prevHash,
              hash: e.hash,
            }),
          );
        }
        if (page.length < PAGE) return 0;
        after = page.at(-1)!.seq;
      }
    }
    default:
      throw new CliError(`unknown audit command "${what ?? ""}"; usage:\n${auditUsage}`);
  }
}
