import { auditEntriesPage, auditHead, lastAuditCheckpoint } from "../store/audit.ts";
import type { Database } from "../store/database.ts";
import { entryHash, GENESIS_HASH } from "./chain.ts";
import { checkpointSignatureValid } from "./checkpoint.ts";

export interface RecentAuditStatus {
  ok: boolean;
  /** When this check ran. */
  checkedAt: Date;
  /** The last signed checkpoint, if there is one. */
  checkpoint?: { seq: number; at: Date; keyLabel: string };
  /** Entries whose hashes and links were checked: from the checkpoint's entry (or seq 1) to the head, at most the limit. */
  entriesChecked: number;
  head?: { seq: number };
  /** True when more entries followed the checkpoint than the limit allowed to check. */
  partial: boolean;
  /** What is wrong, for people; `hsm-ca audit verify` says exactly where and why. */
  problem?: string;
}

/** Entries read per query. */
const PAGE = 1000;

/**
 * The cheap half of `hsm-ca audit verify`, for a page that is loaded often:
 * the last checkpoint's signature (by the audit key as the HSM has it, when
 * publicKeyOf is given), that its entry still has the head hash it signed,
 * and that every entry after it hashes to its content and links to the one
 * before. Entries before the checkpoint are what the checkpoint vouches
 * for; checking them again is the full verification's job.
 */
export async function verifySinceLastCheckpoint(
  db: Database,
  opts: { publicKeyOf?: (label: string) => Promise<Buffer | undefined>; maxEntries?: number; now?: () => Date } = {},
): Promise<RecentAuditStatus> {
  const maxEntries = opts.maxEntries ?? 20_000;
  const checkedAt = (opts.now ?? (() => new Date()))();
  const [checkpoint, head] = await Promise.all([lastAuditCheckpoint(db), auditHead(db)]);
  const status: RecentAuditStatus = {
    ok: true,
    checkedAt,
    checkpoint: checkpoint && { seq: checkpoint.seq, at: checkpoint.at, keyLabel: checkpoint.keyLabel },
    entriesChecked: 0,
    head: head && { seq: head.seq },
    partial: false,
  };
  const fail = (problem: string) => Object.assign(status, { ok: false, problem });

  if (checkpoint) {
    if (opts.publicKeyOf) {
      const hsmKey = await opts.publicKeyOf(checkpoint.keyLabel).catch(() => undefined);
      if (!hsmKey) return fail(`the last checkpoint's key ${checkpoint.keyLabel} is not on the HSM`);
      if (!hsmKey.equals(Buffer.from(checkpoint.publicKey, "base64"))) return fail(`the last checkpoint's public key is not the HSM's key ${checkpoint.keyLabel}`);
    }
    if (!checkpointSignatureValid(checkpoint)) return fail(`the signature of the last checkpoint (seq ${checkpoint.seq}) does not verify`);
    if (!head || head.seq < checkpoint.seq) return fail(`the log ends before the last checkpoint's seq ${checkpoint.seq}: entries were deleted`);
  }

  let expectedSeq = checkpoint?.seq ?? 1;
  let prevHash: string | undefined = checkpoint ? undefined : GENESIS_HASH;
  let after = expectedSeq - 1;
  while (status.entriesChecked < maxEntries) {
    const wanted = Math.min(PAGE, maxEntries - status.entriesChecked);
    const page = await auditEntriesPage(db, { afterSeq: after, limit: wanted });
    for (const e of page) {
      if (e.seq !== expectedSeq) return fail(`seq ${expectedSeq} is missing or out of place (found seq ${e.seq})`);
      if (checkpoint && e.seq === checkpoint.seq && e.hash !== checkpoint.headHash) {
        return fail(`the entry at seq ${e.seq} is not the one the last checkpoint signed`);
      }
      if (prevHash !== undefined && e.prevHash !== prevHash) return fail(`seq ${e.seq} does not link to the entry before it`);
      if (e.subMillisecond || entryHash(e) !== e.hash) return fail(`seq ${e.seq}: its hash does not match its content`);
      prevHash = e.hash;
      expectedSeq++;
      status.entriesChecked++;
    }
    if (page.length < wanted) break;
    after = page.at(-1)!.seq;
  }
  // Entries may have been appended while we read: only the head seen at the start had to be reached.
  if (head && expectedSeq <= head.seq) {
    if (status.entriesChecked >= maxEntries) status.partial = true;
    else return fail(`the log ends at seq ${expectedSeq - 1}, before its head seq ${head.seq}`);
  }
  return status;
}
