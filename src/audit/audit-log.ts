import type { KeyUseListener } from "../hsm/events.ts";
import type { KeyManager, TokenDataObjects } from "../hsm/key-manager.ts";
import { auditHead, insertAuditEntries, withAuditLock, type AuditCheckpointRow, type AuditRow } from "../store/audit.ts";
import type { Database } from "../store/database.ts";
import { currentActor } from "./actor.ts";
import { cleanText, entryHash, GENESIS_HASH, normaliseDetails, type AuditResult } from "./chain.ts";
import { AUDIT_ACTOR, CheckpointSigner } from "./checkpoint.ts";

/**
 * One thing that happened, as a caller reports it. Kinds in use:
 * hsm.sign, hsm.generate, hsm.destroy (subject: the key label),
 * certificate.issue, certificate.not-issued (signed, then not stored),
 * certificate.revoke (subject: the serial),
 * auth.failure, admin.* (token.create, init, rotate, ceremony, eab.create,
 * revoke), approval.*, audit.gap.
 */
export interface AuditEntry {
  kind: string;
  /** Default: the current actor (withActor), else "system". */
  actor?: string;
  /** What it concerns: a serial, a key label, a request id. */
  subject?: string | null;
  /** Default "ok". */
  result?: AuditResult;
  /** Plain JSON (snake_case keys by convention). Never a secret: no token, PIN or HMAC key. */
  details?: Record<string, unknown>;
  /** Default: now. */
  at?: Date;
}

export interface AuditLogOptions {
  /** The database, or a way to open it when the first entry is written (the CLI). */
  db: Database | (() => Promise<Database>);
  log?: AuditLogger;
  /** How long an entry waits in memory before it is written with the others. Default 100 ms. */
  flushDelayMs?: number;
  /** Signed checkpoints of the chain head with the audit key on this HSM: at checkpoint() (a leader job, src/jobs/audit-checkpoint.ts) and at stop(). */
  checkpoints?: { hsm: KeyManager & TokenDataObjects };
  /** Entries kept in memory while the database cannot be written; beyond, the oldest are dropped (and an audit.gap entry says so). Default 100 000. */
  maxPending?: number;
}

type Pending = Omit<AuditRow, "seq" | "prevHash" | "hash">;

/** Entries per transaction. */
const BATCH = 1000;
const MAX_RETRY_DELAY_MS = 5_000;

/**
 * The append-only, hash-chained audit log writer. record() only buffers,
 * so it never slows down or fails a request; entries are written in
 * batches ~100 ms later (or on flush()), each batch in one transaction
 * holding the audit advisory lock: it reads the chain head, numbers the
 * entries on from it and links their hashes, so several replicas (and CLI
 * processes) append to one valid chain. A failing write is logged loudly
 * and retried; the entries stay in memory meanwhile.
 */
export class AuditLog {
  private pending: Pending[] = [];
  private dropped = 0;
  private timer?: NodeJS.Timeout;
  /** Writes and checkpoints run one at a time, in order. */
  private queue: Promise<void> = Promise.resolve();
  private failures = 0;
  private stopped = false;
  private db?: Promise<Database>;
  private readonly signer?: CheckpointSigner;
  private readonly log: AuditLogger;

  constructor(private readonly options: AuditLogOptions) {
    this.log = options.log ?? stderrLog;
    if (options.checkpoints) {
      this.signer = new CheckpointSigner(options.checkpoints.hsm, (anchor) => {
        this.log.error({ seq: anchor.seq }, "AUDIT LOG: the database had lost the checkpoint that the HSM's audit anchor holds; it was put back");
        this.record({ kind: "audit.checkpoint.restored", actor: AUDIT_ACTOR, result: "error", details: { seq: anchor.seq, head_hash: anchor.headHash } });
      });
    }
  }

  /** Entries recorded and not yet written. */
  get pendingCount(): number {
    return this.pending.length;
  }

  /** Buffers an entry; never throws. */
  record(entry: AuditEntry): void {
    try {
      if (this.stopped) this.log.warn({ kind: entry.kind }, "audit entry recorded after the audit log stopped: it may be lost");
      const max = this.options.maxPending ?? 100_000;
      if (this.pending.length >= max) {
        this.pending.shift();
        if (this.dropped++ === 0) this.log.error({ max }, "AUDIT LOG: too many entries waiting for the database; dropping the oldest");
      }
      this.pending.push({
        at: entry.at ?? new Date(),
        kind: cleanText(entry.kind),
        actor: cleanText(entry.actor ?? currentActor() ?? "system"),
        subject: entry.subject == null ? null : cleanText(entry.subject),
        result: entry.result ?? "ok",
        details: normaliseDetails(entry.details),
      });
      this.schedule(this.options.flushDelayMs ?? 100);
    } catch (err) {
      this.log.error({ err: (err as Error).message, kind: entry?.kind }, "AUDIT LOG: cannot record an entry");
    }
  }

  /** Writes every entry recorded so far. Never rejects: a failure is logged and the entries are kept for the next try. */
  flush(): Promise<void> {
    return this.enqueue(() => this.writeAll());
  }

  /**
   * Writes what is pending, then signs the chain head with the audit key
   * (when configured with an HSM and something new was written since the
   * last checkpoint). Resolves with the new checkpoint, if one was made.
   * A failure is logged; with throwOnFailure it also rejects (for the job's
   * record of its runs).
   */
  async checkpoint(options: { throwOnFailure?: boolean } = {}): Promise<AuditCheckpointRow | undefined> {
    const signer = this.signer;
    if (!signer) return undefined;
    let made: AuditCheckpointRow | undefined;
    let failure: unknown;
    await this.enqueue(async () => {
      await this.writeAll();
      try {
        made = await signer.checkpoint(await this.database());
        // The log stream is a second anchor, which an operator can ship off the host.
        if (made) {
          const { seq, headHash, at, keyLabel, signature } = made;
          this.log.info?.({ auditCheckpoint: { seq, headHash, at: at.toISOString(), keyLabel, signature } }, "audit checkpoint signed");
        }
      } catch (err) {
        failure = err;
        this.log.error({ err: (err as Error).message }, "AUDIT LOG: cannot sign a checkpoint");
      }
    });
    if (failure !== undefined && options.throwOnFailure) throw failure;
    return made;
  }

  /** Stops the flush timer, writes what is pending and signs a last checkpoint. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    clearTimeout(this.timer);
    await this.checkpoint();
    // The checkpoint's own key use.
    await this.flush();
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.pending.length) this.log.error({ entries: this.pending.length }, "AUDIT LOG: entries could not be written before stopping and are lost");
  }

  private schedule(delayMs: number): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, delayMs);
    this.timer.unref();
  }

  private enqueue(task: () => Promise<void>): Promise<void> {
    // Never rejects: the tasks log their own failures.
    const run = this.queue.then(task).catch((err: unknown) => this.log.error({ err: (err as Error).message }, "AUDIT LOG: unexpected failure"));
    this.queue = run;
    return run;
  }

  private database(): Promise<Database> {
    const { db } = this.options;
    if (typeof db !== "function") return Promise.resolve(db);
    this.db ??= db().catch((err: unknown) => {
      this.db = undefined;
      throw err;
    });
    return this.db;
  }

  private async writeAll(): Promise<void> {
    while (this.pending.length || this.dropped) {
      if (this.dropped) {
        // Say so in the chain itself before the entries that survived.
        this.pending.unshift({ at: new Date(), kind: "audit.gap", actor: AUDIT_ACTOR, subject: null, result: "error", details: { dropped: this.dropped } });
        this.dropped = 0;
      }
      const batch = this.pending.splice(0, BATCH);
      try {
        await this.append(batch);
        this.failures = 0;
      } catch (err) {
        this.pending.unshift(...batch);
        this.failures++;
        this.log.error(
          { err: (err as Error).message, entries: this.pending.length, attempt: this.failures },
          "AUDIT LOG WRITE FAILED: the entries stay in memory and are retried",
        );
        clearTimeout(this.timer);
        this.timer = undefined;
        this.schedule(Math.min(MAX_RETRY_DELAY_MS, 100 * 2 ** Math.min(this.failures, 10)));
        return;
      }
    }
  }

  private async append(batch: Pending[]): Promise<void> {
    const db = await this.database();
    await withAuditLock(db, async (tx) => {
      const head = await auditHead(tx);
      let seq = head?.seq ?? 0;
      let prevHash = head?.hash ?? GENESIS_HASH;
      const rows: AuditRow[] = batch.map((e) => {
        const row = { ...e, seq: ++seq, prevHash };
        const hash = entryHash(row);
        prevHash = hash;
        return { ...row, hash };
      });
      await insertAuditEntries(tx, rows);
    });
  }
}

/**
 * The HSM listener: each key use (sign, generate, destroy, encrypt, decrypt) becomes an
 * hsm.<operation> entry with the acting caller, the key's label (subject)
 * and CKA_ID, the outcome and the latency.
 *
 *   hsm.onKeyUse(keyUseRecorder(audit, hsm));
 */
export function keyUseRecorder(audit: AuditLog, hsm?: Pick<KeyManager, "keyId">): KeyUseListener {
  const ids = new Map<string, string>();
  const idOf = (label: string, operation: string): string | undefined => {
    let id = ids.get(label);
    if (id === undefined && hsm && operation !== "destroy") {
      try {
        id = hsm.keyId(label);
        if (ids.size > 1000) ids.clear();
        ids.set(label, id);
      } catch {
        // The key is not (or no longer) on the token: the label says which it was.
      }
    }
    return id;
  };
  return (event) => {
    const e = event as typeof event & { id?: string };
    audit.record({
      kind: `hsm.${e.operation}`,
      subject: e.label,
      result: e.ok ? "ok" : "error",
      details: { key_id: e.id ?? idOf(e.label, e.operation), ms: Math.round(e.ms * 1000) / 1000, error: e.error },
    });
  };
}

/** What the writer logs to (a pino Logger will do). */
export interface AuditLogger {
  error(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  /** Each signed checkpoint. */
  info?(obj: object, msg: string): void;
}

const stderrLog: AuditLogger = {
  error: (obj, msg) => void process.stderr.write(JSON.stringify({ level: "error", msg, ...obj }) + "\n"),
  warn: (obj, msg) => void process.stderr.write(JSON.stringify({ level: "warn", msg, ...obj }) + "\n"),
  info: (obj, msg) => void process.stderr.write(JSON.stringify({ level: "info", msg, ...obj }) + "\n"),
};
