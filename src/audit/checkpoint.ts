import crypto from "node:crypto";
import type { Hsm } from "../hsm/hsm.ts";
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
import { canonicalJson } from "./chain.ts";

/** The actor of the audit log's own key uses (the checkpoint signatures). */
export const AUDIT_ACTOR = "system:audit";
export const AUDIT_KEY_ALGORITHM = "ecdsa-p256" as const;

/**
 * What a checkpoint signs: canonical JSON
 * ["hsm-ca audit checkpoint", seq, head_hash, at (ISO 8601), key_label], UTF-8.
 * The signature is ECDSA P-256 with SHA-256, r||s (64 bytes), base64.
 */
export function checkpointMessage(c: { seq: number; headHash: string; at: Date; keyLabel: string }): Buffer {
  return Buffer.from(canonicalJson(["hsm-ca audit checkpoint", c.seq, c.headHash, c.at.toISOString(), c.keyLabel]), "utf8");
}

/** Does the checkpoint's signature verify with the public key it carries (or the one given)? */
export function checkpointSignatureValid(row: AuditCheckpointRow, publicKeySpki?: Buffer): boolean {
  try {
    const key = crypto.createPublicKey({ key: publicKeySpki ?? Buffer.from(row.publicKey, "base64"), format: "der", type: "spki" });
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
 */
export class CheckpointSigner {
  private key?: { label: string; publicKey: string };

  constructor(private readonly hsm: Hsm) {}

  /**
   * Signs the chain's head, unless nothing but earlier checkpoints' own
   * signatures was added since the last checkpoint. Replicas take turns
   * (the audit lock); the second finds the head signed already.
   */
  async checkpoint(db: Database, now: () => Date = () => new Date()): Promise<AuditCheckpointRow | undefined> {
    return withActor(AUDIT_ACTOR, () =>
      withAuditLock(db, async (tx) => {
        const head = await auditHead(tx);
        if (!head) return undefined;
        const last = await lastAuditCheckpoint(tx);
        if (last && (last.seq >= head.seq || !(await hasAuditEntriesAfter(tx, last.seq, AUDIT_ACTOR)))) return undefined;
        const key = await this.keyFor(last);
        const at = now();
        const message = checkpointMessage({ seq: head.seq, headHash: head.hash, at, keyLabel: key.label });
        const signature = await this.hsm
          .signer(key.label, AUDIT_KEY_ALGORITHM)
          .use((k, c) => c.subtle.sign(KEY_ALGORITHM_SPECS[AUDIT_KEY_ALGORITHM].signParams, k, new Uint8Array(message)));
        return insertAuditCheckpoint(tx, {
          seq: head.seq,
          headHash: head.hash,
          at,
          keyLabel: key.label,
          publicKey: key.publicKey,
          signature: Buffer.from(signature).toString("base64"),
        });
      }),
    );
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
    const generated = await this.hsm.generateKey(label, AUDIT_KEY_ALGORITHM);
    return (this.key = { label, publicKey: Buffer.from(generated.spki).toString("base64") });
  }
}
