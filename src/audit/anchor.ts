import type { TokenDataObjects } from "../hsm/key-manager.ts";
import { auditEntriesPage, type AuditCheckpointRow } from "../store/audit.ts";
import type { Database } from "../store/database.ts";
import { canonicalJson, entryHash } from "./chain.ts";

/**
 * The audit anchor: the latest signed checkpoint, kept on the HSM token as
 * a private data object, where someone with write access to the database
 * cannot change it. The database's checkpoints must reach it and the chain
 * must pass through its head; it only ever moves forward, under the audit
 * lock that orders checkpoints across replicas.
 */
export const AUDIT_ANCHOR_LABEL = "hsm-ca audit anchor";
const FORMAT = "hsm-ca audit anchor v1";

export type AuditAnchor = Pick<AuditCheckpointRow, "seq" | "headHash" | "at" | "keyLabel" | "publicKey" | "signature">;

export type AnchorStore = TokenDataObjects;

export class AuditAnchorError extends Error {}

/**
 * The data object's value: canonical JSON of
 * {format, seq, head_hash, at, key_label, public_key, signature}, the
 * checkpoint as audit_checkpoints holds it, so that a copy read with
 * pkcs11-tool --read-object can be checked on its own.
 */
export function encodeAnchor(a: AuditAnchor): Buffer {
  return Buffer.from(
    canonicalJson({
      format: FORMAT,
      seq: a.seq,
      head_hash: a.headHash,
      at: a.at.toISOString(),
      key_label: a.keyLabel,
      public_key: a.publicKey,
      signature: a.signature,
    }),
    "utf8",
  );
}

export function decodeAnchor(value: Buffer): AuditAnchor | undefined {
  try {
    const o = JSON.parse(value.toString("utf8")) as Record<string, unknown>;
    const at = new Date(o.at as string);
    if (o.format !== FORMAT || !Number.isSafeInteger(o.seq) || (o.seq as number) < 1 || Number.isNaN(at.getTime())) return undefined;
    if (![o.head_hash, o.key_label, o.public_key, o.signature].every((v) => typeof v === "string")) return undefined;
    return {
      seq: o.seq as number,
      headHash: o.head_hash as string,
      at,
      keyLabel: o.key_label as string,
      publicKey: o.public_key as string,
      signature: o.signature as string,
    };
  } catch {
    return undefined;
  }
}

/** The anchor on the token, or undefined when there is none yet. Two objects (a replacement interrupted): the later one. */
export function readAnchor(hsm: AnchorStore): AuditAnchor | undefined {
  const values = hsm.readDataObjects(AUDIT_ANCHOR_LABEL);
  const anchors = values.map(decodeAnchor).filter((a): a is AuditAnchor => a !== undefined);
  if (values.length > 0 && anchors.length === 0) throw new AuditAnchorError(`the data object "${AUDIT_ANCHOR_LABEL}" on the HSM is not an audit anchor`);
  return anchors.sort((a, b) => b.seq - a.seq)[0];
}

/** Moves the anchor forward to this checkpoint; refuses to move it back or to stay (replicas take turns under the audit lock). */
export function advanceAnchor(hsm: AnchorStore, current: AuditAnchor | undefined, next: AuditAnchor): void {
  if (current && next.seq <= current.seq) {
    throw new AuditAnchorError(`the audit anchor is at seq ${current.seq} already: not moving it back to seq ${next.seq}`);
  }
  hsm.writeDataObject(AUDIT_ANCHOR_LABEL, encodeAnchor(next));
}

/** Why the chain does not pass through this checkpoint's head (the entry at its seq is gone or another), if it does not. */
export async function chainProblemAt(db: Database, cp: Pick<AuditAnchor, "seq" | "headHash">, what: string): Promise<string | undefined> {
  const [entry] = await auditEntriesPage(db, { afterSeq: cp.seq - 1, limit: 1 });
  if (!entry || entry.seq !== cp.seq) return `the log has no entry at seq ${cp.seq}, which ${what} signed: entries were deleted`;
  if (entry.subMillisecond || entryHash(entry) !== cp.headHash) return `the entry at seq ${cp.seq} is not the one ${what} signed: the log was rewritten`;
  return undefined;
}
