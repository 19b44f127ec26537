import * as graphene from "graphene-pk11";
import { Crypto } from "node-webcrypto-p11";

/**
 * A PKCS#11 session runs one operation at a time: two overlapping signs on
 * one session fail with CKR_OPERATION_ACTIVE. The pool hands each caller a
 * session of its own (wrapped in a WebCrypto provider) and queues the rest.
 */
export interface PooledSession {
  readonly session: graphene.Session;
  readonly crypto: Crypto;
  /** CryptoKeys found on this session, by CKA_LABEL. */
  readonly keys: Map<string, CryptoKey>;
}

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
  private readonly waiters: Array<(member: PooledSession) => void> = [];
  private closed = false;

  constructor(slot: graphene.Slot, size: number) {
    this.lookup = slot.open(graphene.SessionFlag.SERIAL_SESSION | graphene.SessionFlag.RW_SESSION);
    for (let i = 0; i < size; i++) {
      const session = slot.open(graphene.SessionFlag.SERIAL_SESSION | graphene.SessionFlag.RW_SESSION);
      const member: PooledSession = { session, crypto: new Crypto({ session }), keys: new Map() };
      this.members.push(member);
      this.idle.push(member);
    }
  }

  get size(): number {
    return this.members.length;
  }

  get inUse(): number {
    return this.members.length - this.idle.length;
  }

  get waiting(): number {
    return this.waiters.length;
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

  close(): void {
    this.closed = true;
    try {
      this.lookup.close();
    } catch {
      // the module may already be finalised
    }
    for (const m of this.members) {
      try {
        m.session.close();
      } catch {
        // the module may already be finalised
      }
    }
    this.members.length = 0;
    this.idle.length = 0;
  }

  private acquire(): Promise<PooledSession> {
    if (this.closed) return Promise.reject(new Error("the HSM session pool is closed"));
    const member = this.idle.pop();
    if (member) return Promise.resolve(member);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private release(member: PooledSession): void {
    if (this.closed) return;
    const next = this.waiters.shift();
    if (next) next(member);
    else this.idle.push(member);
  }
}
