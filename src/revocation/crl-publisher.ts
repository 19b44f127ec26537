import * as x509 from "@peculiar/x509";
import type { Logger } from "pino";
import { buildCrl, type CrlEntry } from "../ca/crl.ts";
import type { KeyManager } from "../hsm/key-manager.ts";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import { listCas, type CaRow } from "../store/cas.ts";
import { revokedEntries } from "../store/certificates.ts";
import { listCrossCertificates } from "../store/cross-certificates.ts";
import { latestCrlTimes, nextCrlNumber, saveCrl, type CrlRow, type CrlTimes } from "../store/crls.ts";
import type { Database } from "../store/database.ts";
import { RevocationUrls, WHOLE_ISSUER } from "./urls.ts";

export interface CrlSettings {
  /** Partitions of each intermediate's CRL; 0: one CRL per issuer. */
  partitions: number;
  fullLifetimeMs: number;
  deltaLifetimeMs: number;
}

/** Revocations this close to a build may not be visible to it yet: deltas overlap by this much. */
const VISIBILITY_MARGIN_MS = 10_000;
/** Revocations within this window are published together. */
const DEBOUNCE_MS = 300;

/**
 * Builds, signs (with the issuer's key in the HSM) and stores CRLs: for each
 * CA a full CRL (per partition when configured) and a delta CRL against it.
 * Replicas may build at once: numbers come from one sequence and a stored
 * CRL is only ever replaced by a higher-numbered one.
 */
export class CrlPublisher {
  private readonly pending = new Map<number, NodeJS.Timeout>();
  private readonly running = new Set<Promise<void>>();

  constructor(
    private readonly deps: { db: Database; hsm: KeyManager; log: Logger; urls: () => RevocationUrls; settings: CrlSettings; now(): Date },
  ) {}

  /** After a revocation: republish that issuer's CRLs shortly (well within 5 s). */
  revoked(issuerId: number): void {
    if (this.pending.has(issuerId)) return;
    this.pending.set(
      issuerId,
      setTimeout(() => {
        this.pending.delete(issuerId);
        this.track(this.publishIssuerById(issuerId, { full: true }).then(() => {}));
      }, DEBOUNCE_MS),
    );
  }

  /** The schedule: full CRLs past half their life, deltas past half theirs, for every CA. */
  async publishDue(): Promise<void> {
    const now = this.deps.now().getTime();
    for (const ca of await listCas(this.deps.db)) {
      if (!this.canSign(ca)) continue;
      for (const partition of this.partitionsOf(ca)) {
        const full = await latestCrlTimes(this.deps.db, ca.id, partition, "full");
        const delta = await latestCrlTimes(this.deps.db, ca.id, partition, "delta");
        const halfGone = (c: { thisUpdate: Date; nextUpdate: Date } | undefined) =>
          !c || now >= c.thisUpdate.getTime() + (c.nextUpdate.getTime() - c.thisUpdate.getTime()) / 2;
        if (halfGone(full)) await this.publishPartition(ca, partition, { full: true });
        else if (halfGone(delta)) await this.publishPartition(ca, partition, { full: false });
      }
    }
  }

  /** Publishes one CA's CRLs now; lifetimeMs overrides the full CRL's (an offline root's CRL lives long). */
  async publishIssuerById(issuerId: number, what: { full: boolean; lifetimeMs?: number }): Promise<boolean> {
    const ca = (await listCas(this.deps.db)).find((c) => c.id === issuerId);
    if (!ca || !this.canSign(ca)) return false;
    for (const partition of this.partitionsOf(ca)) await this.publishPartition(ca, partition, what);
    return true;
  }

  /** Waits for builds in flight (shutdown, tests). */
  async drain(): Promise<void> {
    for (const t of this.pending.values()) clearTimeout(t);
    const pendingIds = [...this.pending.keys()];
    this.pending.clear();
    for (const id of pendingIds) this.track(this.publishIssuerById(id, { full: true }).then(() => {}));
    await Promise.allSettled([...this.running]);
  }

  /**
   * A destroyed key signs nothing more (its certificates have all expired);
   * an offline root signs its CRL in a ceremony (`hsm-ca ceremony sign-root-crl`);
   * an external CA's CRL is its own CA's job: hsm-ca never signs with its key.
   */
  private canSign(ca: CaRow): boolean {
    return ca.keyOrigin !== "external" && !ca.keyDestroyedAt && this.deps.hsm.hasKey(ca.keyLabel);
  }

  /** Every CA has its whole-issuer CRL; intermediates add partitions when configured. */
  private partitionsOf(ca: CaRow): number[] {
    const parts = [WHOLE_ISSUER];
    if (ca.role === "intermediate") for (let p = 0; p < this.deps.settings.partitions; p++) parts.push(p);
    return parts;
  }

  private async publishPartition(ca: CaRow, partition: number, what: { full: boolean; lifetimeMs?: number }): Promise<void> {
    const { db, hsm, log } = this.deps;
    const settings = { ...this.deps.settings, fullLifetimeMs: what.lifetimeMs ?? this.deps.settings.fullLifetimeMs };
    const urls = this.deps.urls();
    const started = this.deps.now();
    const issuer = new x509.X509Certificate(ca.certificatePem);
    const signer = hsm.signer(ca.keyLabel, ca.keyAlgorithm as CaKeyAlgorithm);
    // A partition's CRLs name their scope exactly as its certificates' CRL DP does (a critical
    // Issuing Distribution Point), so that one partition's CRL cannot stand in for another's.
    // A CRL of everything the issuer signed needs no IDP (RFC 5280 §5.2.5: the IDP narrows scope)
    // and has none: NSS, which implements no IDP, refuses every CRL with one as an unknown
    // critical extension. The root's CRL must also cover the root itself, which has no CRL DP
    // (openssl -crl_check_all). No onlyContainsUserCerts anywhere: the intermediate also signs
    // sub-CAs (CA profiles), and a relying party would hold a CRL limited to user certificates to
    // say nothing about them.
    const idp = ca.role === "intermediate" && partition !== WHOLE_ISSUER ? { url: urls.crl(ca.id, partition, "full") } : undefined;
    let base: CrlTimes | undefined = what.full ? undefined : await latestCrlTimes(db, ca.id, partition, "full");
    if (!base) {
      const number = await nextCrlNumber(db, ca.id);
      const entries = await collect(this.entriesOf(ca, partition, started));
      const der = await buildCrl({
        issuer,
        signer,
        keyAlgorithm: ca.keyAlgorithm as CaKeyAlgorithm,
        crlNumber: number,
        thisUpdate: started,
        nextUpdate: new Date(started.getTime() + settings.fullLifetimeMs),
        entries,
        freshestCrlUrl: urls.crl(ca.id, partition, "delta"),
        issuingDistributionPoint: idp,
        // The lint gate holds the number above the last one published for this partition.
        previousNumber: (await latestCrlTimes(db, ca.id, partition, "full"))?.crlNumber,
      });
      const row: CrlRow = {
        issuerId: ca.id,
        partition,
        kind: "full",
        crlNumber: number,
        baseCrlNumber: null,
        coversUntil: new Date(started.getTime() - VISIBILITY_MARGIN_MS),
        thisUpdate: started,
        nextUpdate: new Date(started.getTime() + settings.fullLifetimeMs),
        entries: entries.length,
        der: Buffer.from(der.buffer, der.byteOffset, der.byteLength),
      };
      await saveCrl(db, row);
      base = row;
      log.info({ issuer: ca.id, partition, crlNumber: String(number), entries: entries.length, ms: Date.now() - started.getTime() }, "published a full CRL");
    }
    const deltaNumber = await nextCrlNumber(db, ca.id);
    const deltaEntries = await collect(this.entriesOf(ca, partition, started, base.coversUntil));
    const delta = await buildCrl({
      issuer,
      signer,
      keyAlgorithm: ca.keyAlgorithm as CaKeyAlgorithm,
      crlNumber: deltaNumber,
      thisUpdate: started,
      nextUpdate: new Date(started.getTime() + settings.deltaLifetimeMs),
      entries: deltaEntries,
      deltaOf: base.crlNumber,
      issuingDistributionPoint: idp,
      previousNumber: (await latestCrlTimes(db, ca.id, partition, "delta"))?.crlNumber,
    });
    await saveCrl(db, {
      issuerId: ca.id,
      partition,
      kind: "delta",
      crlNumber: deltaNumber,
      baseCrlNumber: base.crlNumber,
      coversUntil: new Date(started.getTime() - VISIBILITY_MARGIN_MS),
      thisUpdate: started,
      nextUpdate: new Date(started.getTime() + settings.deltaLifetimeMs),
      entries: deltaEntries.length,
      der: Buffer.from(delta.buffer, delta.byteOffset, delta.byteLength),
    });
  }

  /** Revoked certificates under this CA: leaves for intermediates, intermediates for the root. */
  private async *entriesOf(ca: CaRow, partition: number, now: Date, revokedAfter?: Date): AsyncGenerator<CrlEntry> {
    if (ca.role === "root") {
      for (const child of await listCas(this.deps.db)) {
        if (child.parentId !== ca.id || !child.revokedAt || child.notAfter <= now) continue;
        if (revokedAfter && child.revokedAt <= revokedAfter) continue;
        yield { serial: child.serial, revokedAt: child.revokedAt, reason: child.revocationReason ?? undefined };
      }
      // Cross certificates it signed (a root rollover's): a revoked one is listed like a revoked intermediate.
      for (const x of await listCrossCertificates(this.deps.db)) {
        if (x.issuerCaId !== ca.id || !x.revokedAt || x.notAfter <= now) continue;
        if (revokedAfter && x.revokedAt <= revokedAfter) continue;
        yield { serial: x.serial, revokedAt: x.revokedAt, reason: x.revocationReason ?? undefined };
      }
      return;
    }
    const rows = revokedEntries(this.deps.db, {
      issuerId: ca.id,
      partition: partition === WHOLE_ISSUER ? undefined : partition,
      revokedAfter,
      notExpiredAt: now,
    });
    for await (const r of rows) {
      yield { serial: r.serial, revokedAt: r.revokedAt, reason: r.reason ?? undefined, invalidityDate: r.invalidityDate ?? undefined };
    }
  }

  private track(p: Promise<void>): void {
    const tracked = p.catch((err: Error) => this.deps.log.error({ err: err.message }, "CRL publication failed"));
    this.running.add(tracked);
    void tracked.finally(() => this.running.delete(tracked));
  }
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
