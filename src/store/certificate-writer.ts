import { sql } from "drizzle-orm";
import type { Database } from "./database.ts";
import { isDatabaseUnavailable } from "./errors.ts";
import { rowsOf } from "./raw-sql.ts";
import type { certificates } from "./schema.ts";

type CertificateRow = typeof certificates.$inferSelect;
/** What issuance stores; the rest of the row is the table's defaults. */
export type NewCertificateRow = Pick<
  typeof certificates.$inferInsert,
  "serial" | "issuerId" | "profile" | "subject" | "sans" | "notBefore" | "notAfter" | "certificatePem" | "fingerprintSha256" | "spkiSha256" | "requestedBy" | "crlPartition"
>;

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
 *
 * One statement text whatever the batch size (the rows as one JSON
 * parameter): PostgreSQL plans it once per connection, no ORM builds it
 * row by row, and it returns only what the database made (id, created_at)
 * instead of every column back.
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
      const made = await insertRows(this.db, batch.map((p) => p.row));
      for (const p of batch) {
        const row = made.get(p.row.serial);
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
            const row = (await insertRows(this.db, [p.row])).get(p.row.serial);
            if (!row) throw new Error(`the database returned no row for serial ${p.row.serial}`);
            p.resolve(row);
          } catch (e) {
            p.reject(e);
          }
        }),
      );
    }
  }
}

/** Inserts the rows in one statement; the stored rows by serial. */
async function insertRows(db: Database, rows: NewCertificateRow[]): Promise<Map<string, CertificateRow>> {
  // One JSON parameter for the whole batch: a single text value both drivers pass as it is.
  const batch = JSON.stringify(
    rows.map((r) => ({
      serial: r.serial,
      issuer_id: r.issuerId,
      profile: r.profile,
      subject: r.subject,
      sans: r.sans,
      not_before: r.notBefore.toISOString(),
      not_after: r.notAfter.toISOString(),
      certificate_pem: r.certificatePem,
      fingerprint_sha256: r.fingerprintSha256,
      spki_sha256: r.spkiSha256,
      requested_by: r.requestedBy ?? null,
      crl_partition: r.crlPartition ?? null,
    })),
  );
  const result = await db.execute(sql`
    insert into certificates (serial, issuer_id, profile, subject, sans, not_before, not_after, certificate_pem, fingerprint_sha256, spki_sha256, requested_by, crl_partition)
    select * from json_to_recordset(${batch}::json) as r(serial text, issuer_id int, profile text, subject text, sans jsonb, not_before timestamptz,
      not_after timestamptz, certificate_pem text, fingerprint_sha256 text, spki_sha256 text, requested_by text, crl_partition int)
    returning id, serial, (extract(epoch from created_at) * 1000)::float8 as created_ms`);
  const bySerial = new Map<string, CertificateRow>();
  const input = new Map(rows.map((r) => [r.serial, r]));
  for (const made of rowsOf(result) as Array<{ id: number | string; serial: string; created_ms: number | string }>) {
    const r = input.get(made.serial)!;
    bySerial.set(made.serial, {
      ...r,
      id: Number(made.id),
      requestedBy: r.requestedBy ?? null,
      crlPartition: r.crlPartition ?? null,
      status: "valid",
      createdAt: new Date(Number(made.created_ms)),
      revokedAt: null,
      revocationReason: null,
      invalidityDate: null,
      revokedBy: null,
      ocspPending: true,
    });
  }
  return bySerial;
}

const writers = new WeakMap<Database, CertificateWriter>();

/** The writer for this database (or transaction): one queue per handle. */
export function certificateWriterFor(db: Database): CertificateWriter {
  let w = writers.get(db);
  if (!w) writers.set(db, (w = new CertificateWriter(db)));
  return w;
}
