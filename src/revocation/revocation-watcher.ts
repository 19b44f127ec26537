import type { Logger } from "pino";
import { casRevokedSince } from "../store/cas.ts";
import { revokedSince } from "../store/certificates.ts";
import type { Database } from "../store/database.ts";

export interface RevocationEvent {
  serial: string;
  /** A CA certificate (an intermediate) rather than an end-entity one. */
  ca: boolean;
  /** The CA whose CRL must list it: the issuer of a leaf, the parent of a revoked CA. */
  crlIssuerId: number;
}

/** Replicas' clocks differ a little: look back this far and drop repeats. */
const OVERLAP_MS = 10_000;

/**
 * Polls the database for new revocations, whoever made them (REST, ACME,
 * the CLI, another replica), and tells the CRL publisher and the OCSP
 * cache. One path for all: a revocation shows within a poll interval.
 */
export class RevocationWatcher {
  private watermark: Date;
  private readonly seen = new Map<string, number>();
  private timer?: NodeJS.Timeout;
  private busy = false;

  constructor(
    private readonly deps: {
      db: Database;
      log: Logger;
      now(): Date;
      onRevoked: Array<(events: RevocationEvent[]) => void>;
    },
    private readonly intervalMs = 1_000,
  ) {
    this.watermark = deps.now();
  }

  start(): void {
    this.timer = setInterval(() => void this.poll(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  async poll(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const since = new Date(this.watermark.getTime() - OVERLAP_MS);
      const events: RevocationEvent[] = [];
      for (const r of await revokedSince(this.deps.db, since)) {
        if (this.seen.has(r.serial)) continue;
        this.seen.set(r.serial, r.revokedAt.getTime());
        events.push({ serial: r.serial, ca: false, crlIssuerId: r.issuerId });
        if (r.revokedAt > this.watermark) this.watermark = r.revokedAt;
      }
      for (const ca of await casRevokedSince(this.deps.db, since)) {
        if (this.seen.has(ca.serial) || ca.parentId === null) continue;
        this.seen.set(ca.serial, ca.revokedAt!.getTime());
        events.push({ serial: ca.serial, ca: true, crlIssuerId: ca.parentId });
      }
      // Forget what is older than the look-back window.
      for (const [serial, at] of this.seen) if (at < since.getTime()) this.seen.delete(serial);
      if (events.length) for (const listener of this.deps.onRevoked) listener(events);
    } catch (err) {
      this.deps.log.error({ err: (err as Error).message }, "cannot poll for revocations");
    } finally {
      this.busy = false;
    }
  }
}
