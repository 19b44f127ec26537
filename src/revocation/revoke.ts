import { actorFor } from "../audit/actor.ts";
import type { AuditLog } from "../audit/audit-log.ts";
import { Rejection } from "../errors.ts";
import type { Metrics } from "../metrics/catalogue.ts";
import { blockKey } from "../store/blocked-keys.ts";
import { certificateBySerial, revokeCertificate, type CertificateRow } from "../store/certificates.ts";
import type { Database } from "../store/database.ts";
import { KEY_COMPROMISE, reasonName, SUBSCRIBER_REASONS } from "./reasons.ts";

export interface RevokeRequest {
  serial: string;
  reason: number;
  invalidityDate?: Date;
  /** Who asked: an API token id, acme:<account>, or cli. */
  by: string;
}

export interface RevokeOutcome {
  row: CertificateRow;
  /** It was revoked before this request: nothing changed. */
  alreadyRevoked: boolean;
}

/**
 * One revocation path for REST, ACME and the CLI. Idempotent: revoking a
 * revoked certificate changes nothing and says so. keyCompromise also bars
 * the public key from any later certificate. CRLs and OCSP learn of it from
 * the database (RevocationWatcher), whichever process revoked it.
 */
export async function revoke(ctx: { db: Database; now(): Date; audit?: AuditLog; metrics?: Pick<Metrics, "revocations"> }, req: RevokeRequest): Promise<RevokeOutcome> {
  if (!SUBSCRIBER_REASONS.includes(req.reason)) {
    throw new Rejection("bad-revocation-reason", `reason ${reasonName(req.reason)} is not accepted; use one of ${SUBSCRIBER_REASONS.map(reasonName).join(", ")}`);
  }
  const now = ctx.now();
  if (req.invalidityDate && req.invalidityDate > now) {
    throw new Rejection("malformed-request", "invalidityDate cannot be in the future");
  }
  const existing = await certificateBySerial(ctx.db, req.serial);
  if (!existing) throw new Rejection("not-found", `no certificate with serial ${req.serial}`);
  const row = await revokeCertificate(ctx.db, req.serial, { reason: req.reason, at: now, invalidityDate: req.invalidityDate, by: req.by });
  if (!row) return { row: (await certificateBySerial(ctx.db, req.serial))!, alreadyRevoked: true };
  if (req.reason === KEY_COMPROMISE) await blockKey(ctx.db, row.spkiSha256, "keyCompromise", row.serial);
  ctx.metrics?.revocations.inc({ reason: reasonName(req.reason), source: req.by === "cli" ? "cli" : req.by.startsWith("acme:") ? "acme" : "api" });
  ctx.audit?.record({
    kind: "certificate.revoke",
    actor: actorFor(req.by),
    subject: row.serial,
    details: { serial: row.serial, profile: row.profile, reason: reasonName(req.reason), invalidity_date: req.invalidityDate, revoked_by: req.by },
  });
  return { row, alreadyRevoked: false };
}
