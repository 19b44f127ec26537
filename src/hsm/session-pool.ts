import * as graphene from "graphene-pk11";
import { Crypto } from "node-webcrypto-p11";
// Default import: pkcs11js is CommonJS and its constants are not visible as ESM named exports.
import pkcs11 from "pkcs11js";
import { HsmBusyError, PoolRetiredError } from "./errors.ts";
import { DEFAULT_SIGNING_OPTIONS, signingCryptoFor, type Pkcs11SigningKey, type SigningCrypto, type SigningOptions } from "./signing-crypto.ts";

/**
 * A PKCS#11 session runs one operation at a time: two overlapping signs on
 * one session fail with CKR_OPERATION_ACTIVE. The pool hands each caller a
 * session of its own (wrapped in a WebCrypto provider) and queues the rest,
 * up to a limit: beyond it, callers are refused at once (HsmBusyError).
 */
export interface PooledSession {
  readonly session: graphene.Session;
  /** node-webcrypto-p11 on this session: key generation and export. */
  readonly crypto: Crypto;
  /** The lean provider on this session: every CA signature. */
  readonly signing: SigningCrypto;
  /** Signing keys found on this session, by CKA_LABEL. Forgotten when a key is destroyed. */
  readonly keys: Map<string, Pkcs11SigningKey>;
}

/** Told when a session is lent out and given back: the module counts what runs on worker threads. */
export interface LeaseTracker {
  begin(): void;
  end(): void;
}

export interface SessionPoolOptions {
  /** Callers that may wait for a session; further ones get HsmBusyError. */
  queueLimit: number;
  /**
   * How long a caller may wait in the queue before it is refused with
   * HsmBusyError (503 + Retry-After) rather than left to time out somewhere
   * above: a slow token (a TPM signs ~150/s) must shed load, not stall.
   */
  maxWaitMs?: number;
  tracker?: LeaseTracker;
  /** How the token signs (capabilities, locking); SoftHSM2's defaults when absent. */
  signing?: SigningOptions;
}

interface Waiter {
  resolve(member: PooledSession): void;
  reject(err: Error): void;
  /** performance.now() when it started waiting. */
  since: number;
}

/** Queue waits above this are refused: well under any client's or proxy's timeout. */
const DEFAULT_MAX_WAIT_MS = 10_000;

const SESSION_FLAGS = graphene.SessionFlag.SERIAL_SESSION | graphene.SessionFlag.RW_SESSION;

export class SessionPool {
  /**
   * A session of its own for synchronous lookups (find, attributes, destroy)
   * on the main thread. Never lent out: a pooled session may be signing on a
   * libuv worker thread at that moment, and two calls on one session at once
   * are undefined behaviour in PKCS#11 (with SoftHSM2: memory corruption).
   */
  readonly lookup: graphene.Session;
  private readonly members: PooledSession[] = [];
  private readonly idle: PooledSession[] = [];
  private readonly waiters: Waiter[] = [];
  private readonly lent = new Set<PooledSession>();
  private retiredBecause?: string;
  /** Set when the handles are dead or may name someone else's sessions: never close them. */
  private abandoned = false;
  private drainWaiters: Array<() => void> = [];
  private readonly queueLimit: number;
  private readonly maxWaitMs: number;
  private readonly tracker?: LeaseTracker;
  /** Runs while callers wait: refuses the ones that waited longer than maxWaitMs. */
  private sweeper?: NodeJS.Timeout;

  constructor(
    readonly slot: graphene.Slot,
    size: number,
    options: SessionPoolOptions,
  ) {
    this.queueLimit = options.queueLimit;
    this.maxWaitMs = options.maxWaitMs ?? DEFAULT_MAX_WAIT_MS;
    this.tracker = options.tracker;
    const signing = options.signing ?? DEFAULT_SIGNING_OPTIONS;
    this.lookup = slot.open(SESSION_FLAGS);
    try {
      for (let i = 0; i < size; i++) {
        let session: graphene.Session;
        try {
          session = slot.open(SESSION_FLAGS);
        } catch (err) {
          // A token with fewer sessions than configured (or than it said): use the ones it gave.
          if (i > 0 && err instanceof pkcs11.Pkcs11Error && err.code === pkcs11.CKR_SESSION_COUNT) break;
          throw err;
        }
        const member: PooledSession = { session, crypto: new Crypto({ session }), signing: signingCryptoFor(session, signing), keys: new Map() };
        this.members.push(member);
        this.idle.push(member);
      }
    } catch (err) {
      this.closeNow();
      throw err;
    }
  }

  get size(): number {
    return this.members.length;
  }

  get inUse(): number {
    return this.lent.size;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  get retired(): boolean {
    return this.retiredBecause !== undefined;
  }

  async use<T>(fn: (member: PooledSession) => Promise<T>): Promise<T> {
    const member = await this.acquire();
    try {
      return await fn(member);
    } finally {
      this.release(member);
    }
  }

  /** Runs fn on every session in turn, e.g. to forget a destroyed key. */
  forEach(fn: (member: PooledSession) => void): void {
    for (const m of this.members) fn(m);
  }

  /**
   * Stops lending: waiting callers are refused (PoolRetiredError), the
   * lookup session and the idle ones are closed now, each lent one when it is
   * given back. Resolves once none is lent any more. Sessions whose handle is
   * already dead (closed by the HSM) are not closed again: the number may
   * already name a new session.
   */
  retire(reason: string): Promise<void> {
    if (this.retiredBecause === undefined) {
      this.retiredBecause = reason;
      for (const w of this.waiters.splice(0)) w.reject(new PoolRetiredError(`the HSM is unavailable: ${reason}`));
      this.stopSweeperWhenIdle();
      this.closeSession(this.lookup);
      for (const m of this.idle.splice(0)) this.closeSession(m.session);
    }
    return this.drained();
  }

  /**
   * The module was finalised: every handle is gone, and the same numbers
   * will name new sessions. Nothing of this pool is closed, ever.
   */
  abandon(reason: string): void {
    this.abandoned = true;
    void this.retire(reason);
  }

  /** Resolves once no session of this pool is lent (right away when none is). */
  drained(): Promise<void> {
    if (this.lent.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Shutting down: as retire, without waiting. */
  close(): void {
    void this.retire("closed");
  }

  private acquire(): Promise<PooledSession> {
    if (this.retiredBecause !== undefined) return Promise.reject(new PoolRetiredError(`the HSM is unavailable: ${this.retiredBecause}`));
    const member = this.idle.pop();
    if (member) {
      this.lend(member);
      return Promise.resolve(member);
    }
    if (this.waiters.length >= this.queueLimit) {
      return Promise.reject(
        new HsmBusyError(`the HSM queue is full: ${this.members.length} sessions busy and ${this.waiters.length} callers waiting; try again shortly`),
      );
    }
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject, since: performance.now() });
      this.sweeper ??= setInterval(() => this.refuseLongWaits(), Math.min(500, this.maxWaitMs)).unref();
    });
  }

  /** The queue is first come first served: the oldest waiters are at the front. */
  private refuseLongWaits(): void {
    const limit = performance.now() - this.maxWaitMs;
    let n = 0;
    while (n < this.waiters.length && this.waiters[n]!.since <= limit) n++;
    for (const w of this.waiters.splice(0, n)) {
      w.reject(new HsmBusyError(`the HSM is slower than the requests: waited ${Math.round(this.maxWaitMs / 1000)} s for one of its ${this.members.length} sessions; try again shortly`));
    }
    this.stopSweeperWhenIdle();
  }

  private stopSweeperWhenIdle(): void {
    if (this.waiters.length === 0 && this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  private lend(member: PooledSession): void {
    this.lent.add(member);
    this.tracker?.begin();
  }

  private release(member: PooledSession): void {
    this.lent.delete(member);
    if (this.retiredBecause === undefined) {
      const next = this.waiters.shift();
      if (next) {
        // Handed straight on: still lent, still one operation running.
        this.lent.add(member);
        next.resolve(member);
        return;
      }
      this.stopSweeperWhenIdle();
      this.idle.push(member);
    } else {
      this.closeSession(member.session);
    }
    this.tracker?.end();
    if (this.lent.size === 0 && this.drainWaiters.length) {
      for (const w of this.drainWaiters.splice(0)) w();
    }
  }

  private closeSession(session: graphene.Session): void {
    if (this.abandoned) return;
    try {
      // Still ours and alive? A handle the HSM already closed is left alone.
      session.lib.C_GetSessionInfo(session.handle);
    } catch {
      return;
    }
    try {
      session.close();
    } catch {
      // the module may already be finalised
    }
  }

  /** Construction failed half-way: close what was opened. */
  private closeNow(): void {
    this.closeSession(this.lookup);
    for (const m of this.members) this.closeSession(m.session);
  }
}
