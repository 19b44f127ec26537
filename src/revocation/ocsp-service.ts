import crypto from "node:crypto";
import * as x509 from "@peculiar/x509";
import type { Logger } from "pino";
import { buildCertId, issuerHashes, matchesIssuer, type IssuerKeyHashes, type OcspCertId } from "../ca/ocsp-cert-id.ts";
import { OcspRequestError, parseOcspRequest } from "../ca/ocsp-request.ts";
import { buildOcspResponse, ocspErrorResponse, type CertStatus, type OcspResponder } from "../ca/ocsp-response.ts";
import type { KeyManager } from "../hsm/key-manager.ts";
import type { Metrics } from "../metrics/catalogue.ts";
import { childCaBySerial, listCas, type CaRow } from "../store/cas.ts";
import { certificateBySerial } from "../store/certificates.ts";
import { crossCertificateBySerial } from "../store/cross-certificates.ts";
import type { Database } from "../store/database.ts";
import { ocspResponseFor, revokedAmong, saveOcspResponse } from "../store/ocsp.ts";
import { OcspUpkeep, type SignedResponse } from "./ocsp-upkeep.ts";
import { responderFor } from "./ocsp-responders.ts";
import { RevocationCheck } from "./revocation-check.ts";

export interface OcspSettings {
  mode: "delegated" | "ca";
  responseLifetimeMs: number;
  responderLifetimeMs: number;
  /** Background signatures per second at most. */
  signRate: number;
  /** Share of the measured signing capacity background signing may take. */
  hsmShare?: number;
  /** Responses kept in memory. */
  cacheEntries: number;
}

export interface OcspAnswer {
  der: Uint8Array;
  /** For HTTP caching (RFC 5019 §6): absent for error responses and nonce responses. */
  validity?: { thisUpdate: Date; nextUpdate: Date; etag: string };
}

interface Issuer {
  row: CaRow;
  hashes: IssuerKeyHashes;
  responder: OcspResponder;
  responderNotAfter: Date;
}

interface Cached {
  der: Uint8Array;
  /** What it says: for counting the answers served from memory. */
  status: CertStatus["status"];
  thisUpdate: Date;
  nextUpdate: Date;
  /** Computed once, served many times. */
  etag: string;
}

function cached(der: Uint8Array, status: CertStatus["status"], thisUpdate: Date, nextUpdate: Date): Cached {
  return { der, status, thisUpdate, nextUpdate, etag: `"${crypto.createHash("sha1").update(der).digest("hex")}"` };
}

/** A cached response is served while at least this much of it is left. */
const MIN_REMAINING_MS = 60_000;
/** Unknown serials get signed "unknown" answers; these many are remembered. */
const UNKNOWN_CACHE_ENTRIES = 10_000;

/**
 * The OCSP responder (RFC 6960, RFC 5019 profile). Responses for issued
 * certificates are pre-signed in the background (throttled), kept in the
 * database for every replica and in memory here; a request is answered from
 * memory when it can. Requests with a nonce (RFC 8954) get a fresh response.
 * A serial this CA never issued is "unknown", never "good". A "good" is
 * never served once a revocation call has returned, on any replica: a
 * cached "good" goes out only after the database has said, in a query sent
 * after the request came in, that the serial is still not revoked.
 */
export class OcspService {
  private issuers: Issuer[] = [];
  /** By serial, then by issuer and CertID hash: a revocation evicts one entry, not a scan. */
  private readonly cache = new Map<string, Map<string, Cached>>();
  private readonly unknown = new Map<string, Map<string, Cached>>();
  private renewing?: Promise<void>;
  private readonly revocationCheck: RevocationCheck;
  /** The leader's background pre-signing. */
  readonly upkeep: OcspUpkeep;

  constructor(
    private readonly deps: {
      db: Database;
      hsm: KeyManager;
      log: Logger;
      now(): Date;
      metrics?: Pick<Metrics, "ocspRequests" | "ocspCacheHits" | "ocspCacheMisses" | "ocspBacklog" | "ocspBacklogOldestSeconds" | "ocspPresignRate" | "ocspSigningCapacity" | "ocspPresigned">;
    },
    private readonly settings: OcspSettings,
  ) {
    this.revocationCheck = new RevocationCheck((serials) => revokedAmong(this.deps.db, serials));
    this.upkeep = new OcspUpkeep(
      { db: deps.db, log: deps.log, now: deps.now, metrics: deps.metrics, sign: (issuerId, serial, status) => this.presign(issuerId, serial, status) },
      { responseLifetimeMs: settings.responseLifetimeMs, maxRate: settings.signRate, hsmShare: settings.hsmShare ?? 0.25 },
    );
  }

  /** Loads the CAs it answers for (all of them: retired CAs' certificates still need answers). */
  async load(): Promise<void> {
    const issuers: Issuer[] = [];
    for (const row of await listCas(this.deps.db)) {
      // Nothing to answer for once a CA's key is gone; an absent offline root cannot certify a responder;
      // an external CA (its key is not ours) answers for its certificates itself.
      if (row.keyOrigin === "external" || row.keyDestroyedAt || !this.deps.hsm.hasKey(row.keyLabel)) continue;
      const { responder, notAfter } = await responderFor(this.deps, row, { mode: this.settings.mode, lifetimeMs: this.settings.responderLifetimeMs });
      issuers.push({ row, hashes: issuerHashes(new x509.X509Certificate(row.certificatePem)), responder, responderNotAfter: notAfter });
    }
    this.issuers = issuers;
  }

  /**
   * Replaces a delegated responder certificate with a third of its life
   * left (or loads the newer one another replica made). Every replica runs
   * it (src/jobs/ocsp-responders.ts), and the pre-signing before each batch;
   * one renewal at a time in this process.
   */
  renewRespondersIfDue(): Promise<void> {
    const now = this.deps.now().getTime();
    if (!this.issuers.some((i) => i.responderNotAfter.getTime() - now < this.settings.responderLifetimeMs / 3)) return Promise.resolve();
    this.renewing ??= this.load().finally(() => (this.renewing = undefined));
    return this.renewing;
  }

  /** Stops the background pre-signing (until resume()); resolves once a batch in progress has stopped (after its current response). */
  stop(): Promise<void> {
    return this.upkeep.stop();
  }

  /** Pre-signing runs again at the job's next tick (benchmarks pause it). */
  resume(): void {
    this.upkeep.resume();
  }

  /** Revoked elsewhere: forget what we had, so the next request reads or signs the new status. */
  evict(serials: string[]): void {
    for (const s of serials) this.cache.delete(s);
  }

  /** Answers one DER request; never throws: every failure is an OCSP error response. */
  async respond(requestDer: Uint8Array): Promise<OcspAnswer> {
    const { answer, status } = await this.answer(requestDer);
    this.deps.metrics?.ocspRequests.inc({ status });
    return answer;
  }

  private async answer(requestDer: Uint8Array): Promise<{ answer: OcspAnswer; status: string }> {
    const error = (status: "malformedRequest" | "unauthorized" | "tryLater") => ({ answer: { der: ocspErrorResponse(status) }, status });
    let certId: OcspCertId;
    let nonce: Buffer | undefined;
    try {
      const req = parseOcspRequest(requestDer);
      certId = req.certIds[0]!;
      nonce = req.nonce;
    } catch (err) {
      if (err instanceof OcspRequestError) return error("malformedRequest");
      throw err;
    }
    const issuer = this.issuers.find((i) => matchesIssuer(certId, i.hashes));
    if (!issuer) return error("unauthorized");
    try {
      if (nonce) {
        // A nonce asks for a fresh signature: no cache is involved, hit or miss.
        const signed = await this.sign(issuer, certId, await this.statusOf(issuer, certId.serial), nonce);
        return { answer: { der: signed.der }, status: signed.status };
      }
      const signed = await this.cachedOrSigned(issuer, certId);
      return { answer: { der: signed.der, validity: signed }, status: signed.status };
    } catch (err) {
      this.deps.log.error({ err: (err as Error).message, serial: certId.serial }, "OCSP response failed");
      return error("tryLater");
    }
  }

  /** From memory, else the database's pre-signed response, else signed now; counted as a hit (by tier) or a miss. */
  private async cachedOrSigned(issuer: Issuer, certId: OcspCertId): Promise<Cached> {
    const serial = certId.serial;
    const variant = `${issuer.row.id}:${certId.hashAlgorithm}`;
    const now = this.deps.now().getTime();
    const fresh = (c: { nextUpdate: Date } | undefined) => c !== undefined && c.nextUpdate.getTime() - now > MIN_REMAINING_MS;
    const hit = this.cache.get(serial)?.get(variant) ?? this.unknown.get(serial)?.get(variant);
    if (fresh(hit)) {
      // The watcher evicts revoked serials within a second; until then only the database knows. Batched: about one
      // indexed query per round trip under load (RevocationCheck). It failing fails the answer (tryLater), as a miss would.
      if (hit!.status !== "good" || !(await this.revocationCheck.isRevoked(serial))) {
        this.deps.metrics?.ocspCacheHits.inc({ tier: "memory" });
        return hit!;
      }
      this.cache.delete(serial);
    }

    const status = await this.statusOf(issuer, certId.serial);
    if (status.status !== "unknown" && certId.hashAlgorithm === "sha1") {
      const stored = await ocspResponseFor(this.deps.db, certId.serial);
      if (stored && stored.issuerId === issuer.row.id && stored.status === status.status && fresh(stored) && sameCertId(stored.der, certId)) {
        const entry = cached(stored.der, stored.status, stored.thisUpdate, stored.nextUpdate);
        this.remember(this.cache, serial, variant, entry);
        this.deps.metrics?.ocspCacheHits.inc({ tier: "database" });
        return entry;
      }
    }
    const signed = await this.sign(issuer, certId, status);
    this.deps.metrics?.ocspCacheMisses.inc();
    if (status.status === "unknown") this.remember(this.unknown, serial, variant, signed, UNKNOWN_CACHE_ENTRIES);
    else {
      this.remember(this.cache, serial, variant, signed);
      if (certId.hashAlgorithm === "sha1") await this.store(issuer, certId.serial, status.status, signed);
    }
    return signed;
  }

  /**
   * Background pre-signing (the leader's, src/jobs/ocsp-presigning.ts;
   * src/revocation/ocsp-upkeep.ts): signs what is due until nothing is,
   * paced. Rejects when a batch failed, unless stop() was called meanwhile.
   */
  async refreshDue(): Promise<void> {
    await this.renewRespondersIfDue();
    await this.upkeep.refreshDue();
  }

  /** One pre-signed response for the upkeep (which stores it, batched), remembered here too. */
  private async presign(issuerId: number, serial: string, status: Exclude<CertStatus, { status: "unknown" }>): Promise<SignedResponse | undefined> {
    const issuer = this.issuers.find((i) => i.row.id === issuerId);
    if (!issuer) return undefined;
    const signed = await this.sign(issuer, buildCertId(issuer.hashes, "sha1", serial), status);
    this.remember(this.cache, serial, `${issuer.row.id}:sha1`, signed);
    return { ...signed, status: status.status };
  }

  private async statusOf(issuer: Issuer, serial: string): Promise<CertStatus> {
    const cert = await certificateBySerial(this.deps.db, serial);
    const row =
      cert && cert.issuerId === issuer.row.id
        ? cert
        : ((await childCaBySerial(this.deps.db, issuer.row.id, serial)) ?? (await crossCertificateBySerial(this.deps.db, issuer.row.id, serial)));
    if (!row) return { status: "unknown" };
    if (row.revokedAt) return { status: "revoked", revokedAt: row.revokedAt, reason: row.revocationReason ?? undefined };
    return { status: "good" };
  }

  private async sign(issuer: Issuer, certId: OcspCertId, status: CertStatus, nonce?: Buffer): Promise<Cached> {
    const now = this.deps.now();
    const nextUpdate = new Date(now.getTime() + this.settings.responseLifetimeMs);
    const der = await buildOcspResponse({ responder: issuer.responder, certId, status, producedAt: now, thisUpdate: now, nextUpdate, nonce });
    return cached(der, status.status, now, nextUpdate);
  }

  private async store(issuer: Issuer, serial: string, status: "good" | "revoked", r: Cached): Promise<void> {
    await saveOcspResponse(this.deps.db, { serial, issuerId: issuer.row.id, status, thisUpdate: r.thisUpdate, nextUpdate: r.nextUpdate, der: Buffer.from(r.der) });
  }

  /** Insertion-ordered map as a bounded cache: the serial cached longest ago goes first. */
  private remember(map: Map<string, Map<string, Cached>>, serial: string, variant: string, value: Cached, max = this.settings.cacheEntries): void {
    const variants = map.get(serial) ?? new Map<string, Cached>();
    variants.set(variant, value);
    map.delete(serial);
    map.set(serial, variants);
    if (map.size > max) map.delete(map.keys().next().value!);
  }
}

/** A stored (SHA-1) response answers only requests whose CertID it carries byte for byte. */
function sameCertId(responseDer: Uint8Array, certId: OcspCertId): boolean {
  return Buffer.from(responseDer).includes(certId.der);
}
