import type { Logger } from "pino";
import type { CertStatus } from "../ca/ocsp-response.ts";
import type { Metrics } from "../metrics/catalogue.ts";
import type { Database } from "../store/database.ts";
import { clearOcspPending, dropOcspUpkeep, ocspBacklog, ocspDue, saveOcspResponses, storedResponsesEstimate, type OcspDueItem, type OcspResponseRow } from "../store/ocsp.ts";

export interface OcspUpkeepSettings {
  responseLifetimeMs: number;
  /** Background signatures per second at most (HSM_CA_OCSP_SIGN_RATE). */
  maxRate: number;
  /** Share of the measured signing capacity the upkeep may take (HSM_CA_OCSP_HSM_SHARE). */
  hsmShare: number;
}

export interface SignedResponse {
  der: Uint8Array;
  status: "good" | "revoked";
  thisUpdate: Date;
  nextUpdate: Date;
}

/** Signs one response (lint gate included) and remembers it in memory; undefined when the issuer is not one this process signs for. */
export type SignOne = (issuerId: number, serial: string, status: Exclude<CertStatus, { status: "unknown" }>) => Promise<SignedResponse | undefined>;

/** Due items read and stored per round trip: one SELECT, one multi-row upsert, one flag UPDATE per batch. */
const BATCH = 256;
/** Signatures in flight at once: the HSM signs on libuv threads while the main thread builds and lints the next ones. */
const IN_FLIGHT = 8;
/** A backlog is cleared within about this long, if the caps allow (new certificates have no response until then). */
const CATCH_UP_S = 10;
/** Never slower than this while anything is due (unless the caps are lower): a handful due is signed at once, not one a second. */
const MIN_RATE = 50;
/** The backlog is counted up to this many (an index range: the count costs what is due, never what is stored). */
const BACKLOG_CAP = 1_000_000;
/** The rate is worked out again at most this often during a long run. */
const REPLAN_MS = 10_000;
/** Headroom over the steady rate that refreshes every response within half its life. */
const COVER_MARGIN = 1.2;

/**
 * Keeps every valid certificate's stored OCSP response fresh, on the jobs
 * leader only (src/jobs/ocsp-presigning.ts): each response is signed once
 * across all replicas and workers, which serve it from the database.
 *
 * Due work comes from two indexes (src/store/ocsp.ts, ocspDue): the
 * certificates flagged pending at issuance or revocation, and stored
 * responses past half their life. At rest a run costs three small indexed
 * queries, however many certificates are stored.
 *
 * The pace adapts: enough to re-sign every stored response within half its
 * life, plus the backlog within ten seconds, but never more than
 * HSM_CA_OCSP_SIGN_RATE nor HSM_CA_OCSP_HSM_SHARE of the signing capacity
 * measured here (so issuance keeps priority on the HSM).
 */
export class OcspUpkeep {
  private running?: Promise<void>;
  private stopping = false;
  /** Responses per second built, linted and signed when unpaced (exponential average); 0 until measured. */
  private capacity = 0;
  private rate = 1;
  /** What the backlog and the stored responses ask for, before the caps (from the last survey). */
  private wanted = MIN_RATE;
  private planned = 0;

  constructor(
    private readonly deps: {
      db: Database;
      log: Logger;
      now(): Date;
      sign: SignOne;
      metrics?: Pick<Metrics, "ocspBacklog" | "ocspBacklogOldestSeconds" | "ocspPresignRate" | "ocspSigningCapacity" | "ocspPresigned">;
    },
    private readonly settings: OcspUpkeepSettings,
  ) {}

  /** Signatures per second it aims at now. */
  get currentRate(): number {
    return this.rate;
  }

  /** One run: signs until nothing is due (or stop()); a second call while one runs joins it. Rejects when a batch failed. */
  refreshDue(): Promise<void> {
    if (this.stopping) return Promise.resolve();
    this.running ??= this.run()
      .catch((err: unknown) => {
        if (!this.stopping) throw err;
      })
      .finally(() => (this.running = undefined));
    return this.running;
  }

  /** Resolves once a run in progress has stopped (after the signatures in flight). */
  stop(): Promise<void> {
    this.stopping = true;
    return this.running?.catch(() => {}) ?? Promise.resolve();
  }

  resume(): void {
    this.stopping = false;
  }

  private get halfLifeMs(): number {
    return this.settings.responseLifetimeMs / 2;
  }

  private refreshBefore(): Date {
    return new Date(this.deps.now().getTime() + this.halfLifeMs);
  }

  private async run(): Promise<void> {
    if ((await this.survey()) === 0) return;
    let next = performance.now();
    for (;;) {
      if (this.stopping) return;
      if (Date.now() - this.planned > REPLAN_MS && (await this.survey()) === 0) return;
      const due = await ocspDue(this.deps.db, this.refreshBefore(), this.halfLifeMs, BATCH);
      if (due.length === 0) break;
      const now = this.deps.now().getTime();
      const gone = due.filter((d) => d.certificateId === null || d.notAfter!.getTime() <= now);
      const live = due.filter((d) => !gone.includes(d));
      const rows: OcspResponseRow[] = [];
      const signed = { good: [] as number[], revoked: [] as number[] };
      const notOurs: OcspDueItem[] = [];
      let failure: unknown;
      for (let i = 0; i < live.length && !this.stopping; i += IN_FLIGHT) {
        const chunk = live.slice(i, i + IN_FLIGHT);
        // Paced: this chunk waits until the rate allows it.
        const wait = next - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const t0 = performance.now();
        const results = await Promise.allSettled(chunk.map((d) => this.deps.sign(d.issuerId, d.serial, statusOf(d))));
        this.measure(chunk.length, performance.now() - t0);
        next = Math.max(next, t0) + (chunk.length * 1000) / this.rate;
        results.forEach((r, j) => {
          const d = chunk[j]!;
          if (r.status === "rejected") failure ??= r.reason;
          else if (!r.value) notOurs.push(d);
          else {
            rows.push({ serial: d.serial, issuerId: d.issuerId, status: r.value.status, thisUpdate: r.value.thisUpdate, nextUpdate: r.value.nextUpdate, der: Buffer.from(r.value.der) });
            signed[r.value.status].push(d.certificateId!);
          }
        });
      }
      if (this.stopping) return;
      // Written after the batch, in one statement each: the upsert before the flags, so a crash in between only signs again.
      await saveOcspResponses(this.deps.db, rows);
      await clearOcspPending(this.deps.db, signed);
      // Expired certificates, CA certificates' on-request responses and issuers whose key is gone leave the upkeep.
      const dropped = [...gone, ...notOurs];
      await dropOcspUpkeep(
        this.deps.db,
        dropped.filter((d) => d.certificateId !== null).map((d) => d.certificateId!),
        dropped.map((d) => d.serial),
      );
      this.deps.metrics?.ocspPresigned.inc(rows.length);
      if (failure) throw failure instanceof Error ? failure : new Error(String(failure));
      if (due.length < BATCH) break;
    }
    await this.survey();
  }

  /** Counts the backlog, works out the rate and sets the gauges; returns how much is due. Every run starts with it. */
  async survey(): Promise<number> {
    this.planned = Date.now();
    const now = this.deps.now();
    const backlog = await ocspBacklog(this.deps.db, this.refreshBefore(), this.halfLifeMs, BACKLOG_CAP);
    const stored = await storedResponsesEstimate(this.deps.db);
    const cover = (stored / (this.halfLifeMs / 1000)) * COVER_MARGIN;
    this.wanted = Math.max(MIN_RATE, cover + backlog.due / CATCH_UP_S);
    this.rate = this.capped();
    const m = this.deps.metrics;
    m?.ocspBacklog.set(backlog.due);
    m?.ocspBacklogOldestSeconds.set(backlog.oldestDueSince ? Math.max(0, (now.getTime() - backlog.oldestDueSince.getTime()) / 1000) : 0);
    m?.ocspPresignRate.set(this.rate);
    m?.ocspSigningCapacity.set(this.capacity);
    return backlog.due;
  }

  /** A chunk signed unpaced tells how many responses a second this process can sign now (slower while issuance is busy). */
  private measure(n: number, ms: number): void {
    if (ms <= 0) return;
    const sample = (n * 1000) / ms;
    this.capacity = this.capacity === 0 ? sample : this.capacity * 0.8 + sample * 0.2;
    // The cap follows the measurement at once, down while issuance keeps the HSM busy and back up when it stops.
    this.rate = this.capped();
  }

  private capped(): number {
    const hsmCap = this.capacity > 0 ? this.capacity * this.settings.hsmShare : Infinity;
    return Math.max(1, Math.min(this.wanted, this.settings.maxRate, hsmCap));
  }
}

function statusOf(d: OcspDueItem): Exclude<CertStatus, { status: "unknown" }> {
  return d.revokedAt ? { status: "revoked", revokedAt: d.revokedAt, reason: d.reason ?? undefined } : { status: "good" };
}
