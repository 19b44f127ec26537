import { auditEntriesPage, auditSeqsByHash, listAuditCheckpoints, type AuditCheckpointRow, type AuditRow } from "../store/audit.ts";
import type { Database } from "../store/database.ts";
import type { AuditAnchor } from "./anchor.ts";
import { entryHash, GENESIS_HASH } from "./chain.ts";
import { AUDIT_ACTOR, checkpointSignatureValid } from "./checkpoint.ts";

export type AuditProblem = "edited" | "deleted" | "inserted" | "re-ordered";

export interface BadEntry {
  /** The first entry that is not as written (for a deletion: the first missing seq). */
  seq: number;
  problem: AuditProblem;
  detail: string;
}

export interface BadCheckpoint {
  id: number;
  seq: number;
  detail: string;
}

export interface AuditVerification {
  ok: boolean;
  entries: number;
  /** The chain's last entry, if any. */
  head?: { seq: number; hash: string };
  checkpoints: number;
  firstBad?: BadEntry;
  /** The first checkpoint (seq order) whose signature or head does not hold. */
  badCheckpoint?: BadCheckpoint;
  /** Why the database's checkpoints or the chain do not reach the HSM's audit anchor. */
  anchorProblem?: string;
  /** The first entry recorded before options.coveredBefore that no checkpoint covers. */
  uncovered?: { seq: number; at: Date };
}

export interface VerifyOptions {
  /**
   * The audit key's public key (SPKI DER) as the HSM has it; undefined when
   * the HSM has no such key, which fails the checkpoint (audit keys are
   * never destroyed). Without this option a checkpoint is checked against
   * the public key stored beside it: that proves the head was signed by
   * that key, not that the key is the HSM's.
   */
  publicKeyOf?: (label: string) => Promise<Buffer | undefined>;
  pageSize?: number;
  /**
   * The HSM's audit anchor (null: the HSM holds none yet). The database's
   * checkpoints must reach it (one at its seq, with its head hash) and the
   * entry at its seq must hash to its head. Undefined: not checked.
   */
  anchor?: AuditAnchor | null;
  /** Entries recorded before this must be covered by a checkpoint (see coverageDeadline). */
  coveredBefore?: Date;
}

/** Slack on top of the checkpoint interval: a checkpoint in progress, a replica's clock a little off. */
const COVERAGE_SLACK_MS = 60_000;

/**
 * Entries older than this should be covered by a checkpoint: every replica
 * signs one each interval, so anything before two intervals and a minute
 * ago that none covers was kept from one. Undefined when checkpoints are off.
 */
export function coverageDeadline(checkpointIntervalMs: number, now = new Date()): Date | undefined {
  if (checkpointIntervalMs <= 0) return undefined;
  return new Date(now.getTime() - 2 * checkpointIntervalMs - COVERAGE_SLACK_MS);
}

type Row = AuditRow & { subMillisecond: boolean };

/**
 * Walks the audit log in seq order and says where it first stops being
 * the chain the writer made, and why: an entry edited (its hash no longer
 * matches its content), deleted (a seq missing, or nothing that it links
 * to), inserted (a seq twice, or the entries around it link past it),
 * re-ordered (it links to an entry that comes after it). Then checks each
 * checkpoint: its signature, and that the entry at its seq has its head
 * hash.
 */
export async function verifyAuditLog(db: Database, options: VerifyOptions = {}): Promise<AuditVerification> {
  const checkpoints = await listAuditCheckpoints(db);
  const checkpointProblems = new Map<number, string>();
  const trusted = new Map<string, Promise<Buffer | undefined>>();
  for (const cp of checkpoints) {
    if (options.publicKeyOf) {
      if (!trusted.has(cp.keyLabel)) trusted.set(cp.keyLabel, options.publicKeyOf(cp.keyLabel).catch(() => undefined));
      const hsmKey = await trusted.get(cp.keyLabel)!;
      if (!hsmKey) {
        checkpointProblems.set(cp.id, `its key ${cp.keyLabel} is not on the HSM`);
        continue;
      }
      if (!hsmKey.equals(Buffer.from(cp.publicKey, "base64"))) {
        checkpointProblems.set(cp.id, `its public key is not the HSM's key ${cp.keyLabel}`);
        continue;
      }
    }
    if (!checkpointSignatureValid(cp)) checkpointProblems.set(cp.id, "its signature does not verify");
  }
  const bySeq = new Map<number, AuditCheckpointRow[]>();
  for (const cp of checkpoints) bySeq.set(cp.seq, [...(bySeq.get(cp.seq) ?? []), cp]);
  const reached = new Set<number>();
  const anchor = options.anchor ?? undefined;
  const anchorProblems = anchor ? await checkpointsReach(anchor, checkpoints, options.publicKeyOf) : [];
  const coveredSeq = Math.max(0, anchor?.seq ?? 0, ...checkpoints.map((cp) => cp.seq));
  let uncovered: AuditVerification["uncovered"];

  const rows = entries(db, options.pageSize ?? 1000);
  let firstBad: BadEntry | undefined;
  let prev: Row | undefined;
  let count = 0;
  let next = await rows.next();
  while (!next.done) {
    const cur = next.value;
    next = await rows.next();
    count++;
    firstBad ??= await check(db, prev, cur, next.done ? undefined : next.value);
    if (anchor && cur.seq === anchor.seq && (cur.subMillisecond || entryHash(cur) !== anchor.headHash)) {
      anchorProblems.push(`the entry at seq ${cur.seq} is not the one the HSM's audit anchor signed: the log was rewritten`);
    }
    if (!uncovered && options.coveredBefore && cur.seq > coveredSeq && cur.at < options.coveredBefore && !isCheckpointKeyUse(cur)) {
      uncovered = { seq: cur.seq, at: cur.at };
    }
    for (const cp of bySeq.get(cur.seq) ?? []) {
      reached.add(cp.id);
      if (!checkpointProblems.has(cp.id) && cp.headHash !== cur.hash) {
        checkpointProblems.set(cp.id, `its head hash is not the hash of the entry at seq ${cp.seq}`);
      }
    }
    prev = cur;
  }
  for (const cp of checkpoints) {
    if (!reached.has(cp.id) && !checkpointProblems.has(cp.id)) {
      checkpointProblems.set(cp.id, `seq ${cp.seq} is not in the log (${prev ? `it ends at seq ${prev.seq}` : "it is empty"}): entries were deleted`);
    }
  }
  if (anchor && (!prev || prev.seq < anchor.seq)) {
    anchorProblems.push(`the log ends ${prev ? `at seq ${prev.seq}` : "before it starts"}, before seq ${anchor.seq} that the HSM's audit anchor signed: entries were deleted`);
  }
  const bad = checkpoints.find((cp) => checkpointProblems.has(cp.id));
  return {
    ok: !firstBad && !bad && anchorProblems.length === 0 && !uncovered,
    entries: count,
    head: prev && { seq: prev.seq, hash: prev.hash },
    checkpoints: checkpoints.length,
    firstBad,
    badCheckpoint: bad && { id: bad.id, seq: bad.seq, detail: checkpointProblems.get(bad.id)! },
    anchorProblem: anchorProblems.length ? anchorProblems.join("; ") : undefined,
    uncovered,
  };
}

/** Why the database's checkpoints do not reach the HSM's anchor: none, fewer (behind it), or another head at its seq. */
async function checkpointsReach(
  anchor: AuditAnchor,
  checkpoints: AuditCheckpointRow[],
  publicKeyOf: VerifyOptions["publicKeyOf"],
): Promise<string[]> {
  const problems: string[] = [];
  const hsmKey = publicKeyOf ? await publicKeyOf(anchor.keyLabel).catch(() => undefined) : Buffer.from(anchor.publicKey, "base64");
  if (!hsmKey || !checkpointSignatureValid(anchor, hsmKey)) problems.push(`the HSM's audit anchor (seq ${anchor.seq}) is not signed by the audit key ${anchor.keyLabel}`);
  const last = checkpoints.at(-1);
  const atSeq = checkpoints.filter((cp) => cp.seq === anchor.seq);
  if (!last) {
    problems.push(`the database has no signed checkpoint, but the HSM's audit anchor holds one at seq ${anchor.seq}: checkpoints were deleted`);
  } else if (last.seq < anchor.seq) {
    problems.push(`the database's last checkpoint is at seq ${last.seq}, behind the HSM's audit anchor at seq ${anchor.seq}: checkpoints were deleted`);
  } else if (atSeq.length === 0) {
    problems.push(`the database has no checkpoint at seq ${anchor.seq}, where the HSM's audit anchor is: checkpoints were deleted`);
  } else if (!atSeq.some((cp) => cp.headHash === anchor.headHash)) {
    problems.push(`the database's checkpoint at seq ${anchor.seq} has another head hash than the HSM's audit anchor`);
  }
  return problems;
}

/** The audit log's own signature of a checkpoint: written after it, covered only by the next one, which waits for something else to happen. */
function isCheckpointKeyUse(e: AuditRow): boolean {
  return e.actor === AUDIT_ACTOR && e.kind.startsWith("hsm.");
}

async function* entries(db: Database, pageSize: number): AsyncGenerator<Row> {
  let after = Number.MIN_SAFE_INTEGER;
  for (;;) {
    const page = await auditEntriesPage(db, { afterSeq: after, limit: pageSize });
    yield* page;
    if (page.length < pageSize) return;
    after = page.at(-1)!.seq;
  }
}

async function check(db: Database, prev: Row | undefined, cur: Row, next: Row | undefined): Promise<BadEntry | undefined> {
  // Numbering: 1, 2, 3... with nothing missing and nothing twice.
  const expected = prev ? prev.seq + 1 : 1;
  if (prev && cur.seq === prev.seq) return { seq: cur.seq, problem: "inserted", detail: `a second entry has seq ${cur.seq}` };
  if (cur.seq < expected) return { seq: cur.seq, problem: "inserted", detail: `seq ${cur.seq} comes before the first entry (seq 1)` };
  if (cur.seq > expected) {
    const missing = cur.seq - 1 === expected ? `seq ${expected} is missing` : `seqs ${expected}..${cur.seq - 1} are missing`;
    return { seq: expected, problem: "deleted", detail: `${missing} (the log goes from ${prev ? `seq ${prev.seq}` : "its start"} to seq ${cur.seq})` };
  }

  // Linkage: it names the hash of the entry before it.
  if (cur.prevHash !== (prev?.hash ?? GENESIS_HASH)) {
    const linked = cur.prevHash === GENESIS_HASH ? [0] : await auditSeqsByHash(db, cur.prevHash);
    const later = linked.find((s) => s > cur.seq);
    if (later !== undefined) {
      return { seq: cur.seq, problem: "re-ordered", detail: `its prev_hash is the hash of seq ${later}, which comes after it` };
    }
    const earlier = linked.filter((s) => s < cur.seq).at(-1);
    if (earlier !== undefined) {
      const between = earlier + 1 === cur.seq - 1 ? `seq ${earlier + 1} was` : `seqs ${earlier + 1}..${cur.seq - 1} were`;
      const to = earlier === 0 ? "the start of the log" : `seq ${earlier}`;
      return { seq: earlier + 1, problem: "inserted", detail: `seq ${cur.seq} links to ${to}: ${between} put in between` };
    }
    return {
      seq: cur.seq,
      problem: "deleted",
      detail: `its prev_hash is the hash of no entry in the log: the entry before it was deleted and the later ones renumbered${prev ? ` (or seq ${prev.seq} was edited and re-hashed)` : ""}`,
    };
  }

  // Content: its hash is the hash of what it says.
  if (cur.subMillisecond || entryHash(cur) !== cur.hash) {
    if (next && next.prevHash === cur.prevHash) {
      return { seq: cur.seq, problem: "inserted", detail: "its hash does not match its content, and the entry after it links past it" };
    }
    return { seq: cur.seq, problem: "edited", detail: "its hash does not match its content" };
  }
  return undefined;
}
