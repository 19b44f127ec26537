import crypto from "node:crypto";
import type { KeyManager, TokenDataObjects } from "../hsm/key-manager.ts";
import { KEY_ALGORITHM_SPECS } from "../hsm/key-algorithms.ts";
import {
  auditHead,
  hasAuditEntriesAfter,
  insertAuditCheckpoint,
  lastAuditCheckpoint,
  withAuditLock,
  type AuditCheckpointRow,
} from "../store/audit.ts";
import type { Database } from "../store/database.ts";
import { withActor } from "./actor.ts";
import { advanceAnchor, AuditAnchorError, chainProblemAt, readAnchor, type AuditAnchor } from "./anchor.ts";
import { canonicalJson } from "./chain.ts";

/** The actor of the audit log's own key uses (the checkpoint signatures). */
export const AUDIT_ACTOR = "system:audit";
export const AUDIT_KEY_ALGORITHM = "ecdsa-p256" as const;
/** On a token without EC mechanisms (opencryptoki's soft token): RSA-2048, PKCS#1 v1.5 with SHA-256. */
export const AUDIT_KEY_ALGORITHM_WITHOUT_EC = "rsa-2048" as const;
type AuditKeyAlgorithm = typeof AUDIT_KEY_ALGORITHM | typeof AUDIT_KEY_ALGORITHM_WITHOUT_EC;

/** The audit key's algorithm, from its public key. */
function auditKeyAlgorithmOf(spki: Buffer): AuditKeyAlgorithm {
  return crypto.createPublicKey({ key: spki, format: "der", type: "spki" }).asymmetricKeyType === "rsa" ? AUDIT_KEY_ALGORITHM_WITHOUT_EC : AUDIT_KEY_ALGORITHM;
}

/**
 * What a checkpoint signs: canonical JSON
 * ["hsm-ca audit checkpoint", seq, head_hash, at (ISO 8601), key_label], UTF-8.
 * The signature is ECDSA P-256 with SHA-256, r||s (64 bytes), base64; on a
 * token without EC, RSA-2048 PKCS#1 v1.5 with SHA-256.
 */
export function checkpointMessage(c: { seq: number; headHash: string; at: Date; keyLabel: string }): Buffer {
  return Buffer.from(canonicalJson(["hsm-ca audit checkpoint", c.seq, c.headHash, c.at.toISOString(), c.keyLabel]), "utf8");
}

/** Does the checkpoint's signature verify with the public key it carries (or the one given)? */
export function checkpointSignatureValid(row: AuditAnchor, publicKeySpki?: Buffer): boolean {
  try {
    const key = crypto.createPublicKey({ key: publicKeySpki ?? Buffer.from(row.publicKey, "base64"), format: "der", type: "spki" });
    if (key.asymmetricKeyType === "rsa" && (key.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048) {
      return crypto.verify("sha256", checkpointMessage(row), key, Buffer.from(row.signature, "base64"));
    }
    if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") return false;
    return crypto.verify("sha256", checkpointMessage(row), { key, dsaEncoding: "ieee-p1363" }, Buffer.from(row.signature, "base64"));
  } catch {
    return false;
  }
}

/**
 * Signs checkpoints with the audit key on the HSM: an ECDSA P-256 key
 * labelled hsm-ca/audit/<date>-<random>, made on first need (and again if
 * it is gone from the token), found again through the last checkpoint.
 * Each checkpoint also becomes the HSM's audit anchor (anchor.ts).
 */
export class CheckpointSigner {
  private key?: { label: string; publicKey: string };

  constructor(
    private readonly hsm: KeyManager & TokenDataObjects,
    /** Told when the database had lost the anchor's checkpoint and it was put back. */
    private readonly onRestored: (anchor: AuditAnchor) => void = () => {},
  ) {}

  /**
   * Signs the chain's head, unless nothing but earlier checkpoints' own
   * signatures was added since the last checkpoint. Replicas take turns
   * (the audit lock); the second finds the head signed already.
   *
   * Refuses (AuditAnchorError) to sign a chain that does not pass through
   * the HSM's anchor: that would vouch for a rewritten log.
   */
  async checkpoint(db: Database, now: () => Date = () => new Date()): Promise<AuditCheckpointRow | undefined> {
    return withActor(AUDIT_ACTOR, () =>
      withAuditLock(db, async (tx) => {
        const anchor = readAnchor(this.hsm);
        const head = await auditHead(tx);
        if (!head) {
          if (anchor) throw new AuditAnchorError(`not signing: the log is empty, but the HSM's audit anchor signed seq ${anchor.seq}`);
          return undefined;
        }
        let last = await lastAuditCheckpoint(tx);
        if (anchor) {
          const problem = await chainProblemAt(tx, anchor, "the HSM's audit anchor");
          if (problem) throw new AuditAnchorError(`not signing a log the HSM's audit anchor does not vouch for: ${problem}`);
          if (!last || last.seq < anchor.seq) {
            // The database lost the anchor's checkpoint (a commit lost after the anchor was written,
            // or rows deleted): the chain still passes through it, so it is put back, and said so.
            if (!(await this.signedByAuditKey(anchor))) throw new AuditAnchorError(`the HSM's audit anchor (seq ${anchor.seq}) is not signed by the audit key on the HSM`);
            last = await insertAuditCheckpoint(tx, anchor);
            this.onRestored(anchor);
          }
        }
        if (last && (last.seq >= head.seq || !(await hasAuditEntriesAfter(tx, last.seq, AUDIT_ACTOR)))) {
          // Nothing new to sign. An anchor behind the last checkpoint (none yet, after an upgrade) catches up.
          if ((!anchor || anchor.seq < last.seq) && (await this.signedByAuditKey(last)) && !(await chainProblemAt(tx, last, "the checkpoint"))) {
            advanceAnchor(this.hsm, anchor, last);
          }
          return undefined;
        }
        const key = await this.keyFor(last);
        const at = now();
        const message = checkpointMessage({ seq: head.seq, headHash: head.hash, at, keyLabel: key.label });
        const algorithm = auditKeyAlgorithmOf(Buffer.from(key.publicKey, "base64"));
        const signature = await this.hsm
          .signer(key.label, algorithm)
          .use((k, c) => c.subtle.sign(KEY_ALGORITHM_SPECS[algorithm].signParams, k, new Uint8Array(message)));
        const row = await insertAuditCheckpoint(tx, {
          seq: head.seq,
          headHash: head.hash,
          at,
          keyLabel: key.label,
          publicKey: key.publicKey,
          signature: Buffer.from(signature).toString("base64"),
        });
        // Before the commit: if the commit is lost, the anchor is ahead and the next checkpoint puts
        // its row back (above). Written after it, a lost anchor write would leave the database ahead.
        advanceAnchor(this.hsm, anchor, row);
        return row;
      }),
    );
  }

  /** Signed by the audit key that is on the HSM under its label (not just by the key stored beside it)? */
  private async signedByAuditKey(cp: AuditAnchor): Promise<boolean> {
    if (!this.hsm.hasKey(cp.keyLabel)) return false;
    const spki = Buffer.from(await this.hsm.publicKeySpki(cp.keyLabel, AUDIT_KEY_ALGORITHM));
    return spki.equals(Buffer.from(cp.publicKey, "base64")) && checkpointSignatureValid(cp, spki);
  }

  private async keyFor(last: AuditCheckpointRow | undefined): Promise<{ label: string; publicKey: string }> {
    if (this.key && this.hsm.hasKey(this.key.label)) return this.key;
    if (last && this.hsm.hasKey(last.keyLabel)) {
      // From the token, not from the row: a row edited in the database must not pick the key.
      const spki = await this.hsm.publicKeySpki(last.keyLabel, AUDIT_KEY_ALGORITHM);
      return (this.key = { label: last.keyLabel, publicKey: Buffer.from(spki).toString("base64") });
    }
    const date = new Date().toISOString().slice(0, 10).replaceAll("-", "");
    const label = `hsm-ca/audit/${date}-${crypto.randomBytes(4).toString("hex")}`;
    const algorithm = this.hsm.unsupportedReason(AUDIT_KEY_ALGORITHM) ? AUDIT_KEY_ALGORITHM_WITHOUT_EC : AUDIT_KEY_ALGORITHM;
    const generated = await this.hsm.generateKey(label, algorithm);
    return (this.key = { label, publicKey: Buffer.from(generated.spki).toString("base64") });
  }
}
