import { summaryOf } from "../../approvals/requests.ts";
import type { RecentAuditStatus } from "../../audit/verify-since-checkpoint.ts";
import { rotationDueAt } from "../../policy/rotation-rule.ts";
import type { Config } from "../../config.ts";
import type { KeyManagerStatus, KeyProvenance } from "../../hsm/key-manager.ts";
import { reasonName } from "../../revocation/reasons.ts";
import { approvalsOfMany, listApprovalRequests } from "../../store/approvals.ts";
import { listCas, type CaRow } from "../../store/cas.ts";
import { waitingPendingCas } from "../../store/pending-cas.ts";
import type { Database } from "../../store/database.ts";
import { duration } from "./format.ts";
import { activeResponder } from "../../store/ocsp.ts";
import { recentlyIssued, recentlyRevoked, type CertificateSummary } from "../../store/recent-certificates.ts";

/** Rows in each of the recent issuance and revocation lists. */
export const RECENT_ROWS = 20;

export interface KeyView {
  label: string;
  /** What the key is for: a CA's role, "OCSP responder", "audit checkpoints". */
  purpose: string;
  provenance?: KeyProvenance;
  /** Why the HSM could not say (an absent offline root, say). */
  error?: string;
}

export interface CaView {
  row: CaRow;
  /** The CA's bar on the validity timeline, in percent of its width. */
  bar: { left: number; width: number };
  /** Where the rotation rule falls on the active intermediate's bar. */
  rotationMark?: number;
}

/** The background jobs as this replica sees them (src/jobs/scheduler.ts JobsStatus, matched by shape). */
export interface JobsView {
  replica: string;
  leading: boolean;
  /** The replica that leads, as far as the database can tell. */
  leader?: string;
  jobs: Array<{
    name: string;
    runsOn: "leader" | "every-replica";
    schedule: string;
    running: boolean;
    nextRun?: Date;
    lastRun?: { at: Date; result: "ok" | "error"; ms: number; error?: string };
  }>;
}

export interface Overview {
  now: Date;
  cas: CaView[];
  timeline: { start: Date; end: Date; now: number };
  rotation: { nextTick?: Date; dueAt?: Date; rule?: string; awaitingSignature?: { subject: string; since: Date; reason: string; keyLabel: string } };
  hsm: { tokenLabel: string; health: { ok: true } | { ok: false; detail: string }; pool: { size: number; inUse: number; waiting: number }; queueLimit: number };
  keys: KeyView[];
  approvals: Array<{ id: string; kind: string; requestedBy: string; required: number; approved: number; createdAt: Date; expiresAt: Date; summary: string }>;
  issued: CertificateSummary[];
  revoked: Array<CertificateSummary & { reason: string }>;
  audit: RecentAuditStatus | { error: string };
  jobs: JobsView | { error: string };
}

export interface OverviewSources {
  db: Database;
  hsm: KeyManagerStatus;
  queueLimit: number;
  rotation: { remaining?: Config["rotation"]["remaining"]; nextTick(): Date | undefined };
  /** The audit chain's state (cached by the caller: checking it reads the entries since the last checkpoint). */
  auditStatus(): Promise<RecentAuditStatus>;
  /** This replica's jobs and who leads them. */
  jobs(): Promise<JobsView>;
  now(): Date;
}

/** Everything the dashboard shows, read at once. Reads only: nothing here changes state. */
export async function readOverview(s: OverviewSources): Promise<Overview> {
  const now = s.now();
  const [cas, waiting, issued, pendingRows, audit, jobs] = await Promise.all([
    listCas(s.db),
    waitingPendingCas(s.db),
    recentlyIssued(s.db, RECENT_ROWS),
    listApprovalRequests(s.db, { status: "pending", limit: 100 }),
    s.auditStatus().catch((err: Error) => ({ error: err.message })),
    s.jobs().catch((err: Error) => ({ error: err.message })),
  ]);
  const [revoked, decisions, responders] = await Promise.all([
    recentlyRevoked(
      s.db,
      cas.map((c) => c.id),
      RECENT_ROWS,
    ),
    approvalsOfMany(
      s.db,
      pendingRows.map((r) => r.id),
    ),
    Promise.all(cas.filter((c) => !c.keyDestroyedAt).map((c) => activeResponder(s.db, c.id))),
  ]);

  const shown = cas.filter((c) => !c.keyDestroyedAt);
  const start = Math.min(now.getTime(), ...shown.map((c) => c.notBefore.getTime()));
  const end = Math.max(now.getTime(), ...shown.map((c) => c.notAfter.getTime()));
  const at = (d: Date) => (end > start ? ((d.getTime() - start) / (end - start)) * 100 : 0);
  const active = shown.find((c) => c.role === "intermediate" && c.status === "active");
  const dueAt = active && s.rotation.remaining ? rotationDueAt(active, s.rotation.remaining) : undefined;

  const keys: KeyView[] = [];
  const keyOf = (label: string, purpose: string) => {
    try {
      keys.push({ label, purpose, provenance: s.hsm.provenance(label) });
    } catch (err) {
      keys.push({ label, purpose, error: (err as Error).message });
    }
  };
  for (const c of shown) if (c.keyOrigin !== "external") keyOf(c.keyLabel, `${c.role} CA #${c.id} (${c.status})`);
  for (const p of waiting) keyOf(p.keyLabel, `next intermediate, awaiting the external root's signature`);
  for (const r of responders) if (r) keyOf(r.keyLabel, `OCSP responder for CA #${r.issuerId}`);
  if ("checkpoint" in audit && audit.checkpoint) keyOf(audit.checkpoint.keyLabel, "audit checkpoints");

  return {
    now,
    cas: orderForDisplay(cas).map((row) => ({
      row,
      bar: { left: at(row.notBefore), width: Math.max(0.5, at(row.notAfter) - at(row.notBefore)) },
      rotationMark: row === active && dueAt ? at(dueAt) : undefined,
    })),
    timeline: { start: new Date(start), end: new Date(end), now: at(now) },
    rotation: {
      nextTick: s.rotation.nextTick(),
      dueAt,
      rule: describeRule(s.rotation.remaining),
      awaitingSignature: waiting[0] && { subject: waiting[0].subject, since: waiting[0].createdAt, reason: waiting[0].reason, keyLabel: waiting[0].keyLabel },
    },
    hsm: { tokenLabel: s.hsm.tokenLabel, health: s.hsm.health(), pool: s.hsm.poolStats, queueLimit: s.queueLimit },
    keys,
    approvals: pendingRows
      .filter((r) => r.expiresAt > now)
      .map((r) => ({
        id: r.id,
        kind: r.kind,
        requestedBy: r.requestedBy,
        required: r.required,
        approved: decisions.filter((d) => d.requestId === r.id && d.decision === "approve").length,
        createdAt: r.createdAt,
        expiresAt: r.expiresAt,
        summary: Object.entries(summaryOf(r))
          .filter(([, v]) => v !== null && v !== undefined)
          .map(([k, v]) => `${k}: ${String(v)}`)
          .join(", "),
      })),
    issued,
    revoked: revoked.map((r) => ({ ...r, reason: reasonName(r.revocationReason ?? 0) })),
    audit,
    jobs,
  };
}

/** Roots first, then each root's intermediates, newest first: the hierarchy read top-down. */
function orderForDisplay(cas: CaRow[]): CaRow[] {
  const roots = cas.filter((c) => c.role === "root").sort((a, b) => b.id - a.id);
  const out: CaRow[] = [];
  for (const root of roots) {
    out.push(root);
    // Below an external root, ours may hang below external intermediates: every level, top down.
    for (let level = [root]; level.length; ) {
      level = cas.filter((c) => level.some((p) => c.parentId === p.id) && c.role === "intermediate").sort((a, b) => b.id - a.id);
      out.push(...level);
    }
  }
  // Anything without a known parent (should not happen) still shows.
  out.push(...cas.filter((c) => !out.includes(c)));
  return out;
}

function describeRule(remaining: Config["rotation"]["remaining"] | undefined): string | undefined {
  if (!remaining) return undefined;
  if ("share" in remaining) return `when less than ${Math.round(remaining.share * 100)}% of its life remains`;
  return `when less than ${duration(remaining.ms)} of its life remains`;
}
