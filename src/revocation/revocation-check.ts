/** Serials asked about in one query at most; more wait for the next one. */
const MAX_BATCH = 500;

interface Waiter {
  serial: string;
  resolve(revoked: boolean): void;
  reject(err: unknown): void;
}

/**
 * "Is this serial revoked now?", answered by a database query sent after the
 * question was asked, so that a revocation committed before it (by this
 * process, another replica or the CLI) is always seen: a cached "good" OCSP
 * answer is served only once this says no. A query is never joined once sent:
 * questions asked while one is in flight wait for the next, and each query
 * carries every serial waiting, so under load the database sees about one
 * query per round trip, not one per OCSP request.
 */
export class RevocationCheck {
  private waiting: Waiter[] = [];
  private inFlight = false;

  constructor(private readonly revokedAmong: (serials: string[]) => Promise<Set<string>>) {}

  isRevoked(serial: string): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      this.waiting.push({ serial, resolve, reject });
      if (!this.inFlight) this.send();
    });
  }

  private send(): void {
    const batch = this.waiting.splice(0, MAX_BATCH);
    if (batch.length === 0) return;
    this.inFlight = true;
    this.revokedAmong([...new Set(batch.map((w) => w.serial))]).then(
      (revoked) => {
        for (const w of batch) w.resolve(revoked.has(w.serial));
      },
      (err: unknown) => {
        for (const w of batch) w.reject(err);
      },
    ).finally(() => {
      this.inFlight = false;
      this.send();
    });
  }
}
