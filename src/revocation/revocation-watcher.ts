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
 * Reads new revocations from the database, whoever made them (REST, ACME,
 * the CLI, another replica), and tells the CRL publisher and the OCSP
 * cache. One path for all: a revocation shows within a poll interval
 * (every replica polls: src/jobs/revocation-watch.ts).
 */
export class RevocationWatcher {
  private watermark: Date;
  private readonly seen = new Map<string, number>();
  private busy = false;

  constructor(
    private readonly deps: {
      db: Database;
      now(): Date;
      onRevoked: Array<(events: RevocationEvent[]) => void>;
    },
  ) {
    this.watermark = deps.now();
  }

  /** One look at the database; rejects when it cannot be read (the next poll looks again from the same watermark). */
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
    } finally {
      this.busy = false;
    }
  }
}
