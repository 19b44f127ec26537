import type { Database } from "./database.ts";
import { isDatabaseUnavailable } from "./errors.ts";
import { certificates } from "./schema.ts";

type CertificateRow = typeof certificates.$inferSelect;
type NewCertificateRow = typeof certificates.$inferInsert;

interface Pending {
  row: NewCertificateRow;
  resolve(row: CertificateRow): void;
  reject(err: unknown): void;
}

/** Rows in one INSERT at most: the statement stays well under PostgreSQL's 65,535 parameters. */
const MAX_BATCH = 500;
/** INSERTs in flight at once: one commits while the next is sent. */
const MAX_IN_FLIGHT = 2;

/**
 * Group commit for issuance records. Every certificate is stored before it
 * is returned, and a commit costs a WAL flush: under load, concurrent
 * issuances would queue behind one another's commits. Here rows that arrive
 * while an INSERT is in flight wait for the next one and go in together
 * (one statement, one commit); a lone row goes at once, so nothing waits
 * when there is no load. A batch that fails (a repeated serial, say) is
 * retried row by row, so only the row at fault fails; one that fails because
 * the database is unavailable fails as a whole.
 */
export class CertificateWriter {
  private readonly queue: Pending[] = [];
  private inFlight = 0;

  constructor(private readonly db: Database) {}

  insert(row: NewCertificateRow): Promise<CertificateRow> {
    return new Promise((resolve, reject) => {
      this.queue.push({ row, resolve, reject });
      if (this.inFlight < MAX_IN_FLIGHT) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.inFlight++;
    try {
      while (this.queue.length > 0) await this.write(this.queue.splice(0, MAX_BATCH));
    } finally {
      this.inFlight--;
    }
  }

  private async write(batch: Pending[]): Promise<void> {
    try {
      const rows = await this.db.insert(certificates).values(batch.map((p) => p.row)).returning();
      const bySerial = new Map(rows.map((r) => [r.serial, r]));
      for (const p of batch) {
        const row = bySerial.get(p.row.serial);
        if (row) p.resolve(row);
        else p.reject(new Error(`the database returned no row for serial ${p.row.serial}`));
      }
    } catch (err) {
      // Row by row finds the row at fault; a database that is down or silent has no row at fault,
      // and retrying would make every caller wait for a second deadline.
      if (batch.length === 1 || isDatabaseUnavailable(err)) {
        for (const p of batch) p.reject(err);
        return;
      }
      await Promise.all(
        batch.map(async (p) => {
          try {
            const [row] = await this.db.insert(certificates).values(p.row).returning();
            p.resolve(row!);
          } catch (e) {
            p.reject(e);
          }
        }),
      );
    }
  }
}

const writers = new WeakMap<Database, CertificateWriter>();

/** The writer for this database (or transaction): one queue per handle. */
export function certificateWriterFor(db: Database): CertificateWriter {
  let w = writers.get(db);
  if (!w) writers.set(db, (w = new CertificateWriter(db)));
  return w;
}
