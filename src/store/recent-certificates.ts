import { and, desc, eq, isNotNull } from "drizzle-orm";
import type { Database } from "./database.ts";
import { certificates } from "./schema.ts";

/** A certificate as a listing shows it: no PEM. */
export type CertificateSummary = Pick<
  typeof certificates.$inferSelect,
  "serial" | "issuerId" | "profile" | "subject" | "sans" | "status" | "notBefore" | "notAfter" | "requestedBy" | "createdAt" | "revokedAt" | "revocationReason" | "revokedBy"
>;

const summary = {
  serial: certificates.serial,
  issuerId: certificates.issuerId,
  profile: certificates.profile,
  subject: certificates.subject,
  sans: certificates.sans,
  status: certificates.status,
  notBefore: certificates.notBefore,
  notAfter: certificates.notAfter,
  requestedBy: certificates.requestedBy,
  createdAt: certificates.createdAt,
  revokedAt: certificates.revokedAt,
  revocationReason: certificates.revocationReason,
  revokedBy: certificates.revokedBy,
};

/** The last certificates issued, newest first (the primary key's order). */
export async function recentlyIssued(db: Database, limit: number): Promise<CertificateSummary[]> {
  return db.select(summary).from(certificates).orderBy(desc(certificates.id)).limit(limit);
}

/**
 * The last revocations, newest first. Asked per issuer, so that each query
 * walks the (issuer_id, revoked_at) index backwards instead of sorting
 * every revoked certificate; then merged.
 */
export async function recentlyRevoked(db: Database, issuerIds: number[], limit: number): Promise<CertificateSummary[]> {
  const perIssuer = await Promise.all(
    issuerIds.map((id) =>
      db
        .select(summary)
        .from(certificates)
        .where(and(eq(certificates.issuerId, id), isNotNull(certificates.revokedAt)))
        .orderBy(desc(certificates.revokedAt))
        .limit(limit),
    ),
  );
  return perIssuer
    .flat()
    .sort((a, b) => b.revokedAt!.getTime() - a.revokedAt!.getTime())
    .slice(0, limit);
}
