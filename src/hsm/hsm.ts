import crypto from "node:crypto";
import * as graphene from "graphene-pk11";
// Default import: pkcs11js is CommonJS and its constants are not visible as ESM named exports.
import pkcs11 from "pkcs11js";
import type { CaSigner } from "../ca/signer.ts";
import type { HsmConfig } from "../config.ts";
import { readDataObjects, replaceDataObject } from "./data-objects.ts";
import { ensureEmbeddedTokenInitialised, prepareEmbeddedToken } from "./embedded-softhsm.ts";
import { KEY_ALGORITHM_SPECS, type CaKeyAlgorithm } from "./key-algorithms.ts";
import { acquireModule, findSlotByTokenLabel, HsmUnavailableError, releaseModule, type ModuleUser, type SharedModule } from "./module.ts";
import { PinError, readPin } from "./pin.ts";
import { openWithSecretKey, sealWithSecretKey, SecretKeyError } from "./secret-key.ts";
import { SessionPool, type PooledSession } from "./session-pool.ts";
import { Pkcs11SigningKey, type SigningCrypto } from "./signing-crypto.ts";

export { HsmBusyError, HsmUnavailableError } from "./module.ts";
export { SecretKeyError } from "./secret-key.ts";

/** Attributes that say where a key came from and whether it can leave the token. */
export interface KeyProvenance {
  token: boolean;
  local: boolean;
  sensitive: boolean;
  alwaysSensitive: boolean;
  extractable: boolean;
  neverExtractable: boolean;
}

export interface GeneratedKey {
  label: string;
  /** CKA_ID, hex. */
  id: string;
  algorithm: CaKeyAlgorithm;
  /** SubjectPublicKeyInfo, DER. */
  spki: ArrayBuffer;
}

export class HsmKeyError extends Error {}

/** One use of a key on the HSM, for the audit log. */
export interface KeyUseEvent {
  label: string;
  operation: "sign" | "generate" | "destroy" | "encrypt" | "decrypt";
  /** The key's CKA_ID, hex, when known (it is not when the key was not found). */
  id?: string;
  ok: boolean;
  ms: number;
  /**
   * Why it failed: the PKCS#11 return code's name (CKR_...), or hsm-ca's own
   * message for a missing key or an unavailable HSM, or the error's class
   * name for anything else. Never a PIN, never key material.
   */
  error?: string;
}

export type KeyUseListener = (event: KeyUseEvent) => void;

/** The HSM became unavailable (with the reason) or available again. */
export type AvailabilityEvent = { available: true; downMs: number } | { available: false; reason: string };
export type AvailabilityListener = (event: AvailabilityEvent) => void;

/** PKCS#11 session state "read/write, user logged in" (pkcs11js does not export CKS_*). */
const CKS_RW_USER_FUNCTIONS = 3;

/**
 * Return codes that mean the HSM, the token, the session or the login is
 * gone: the Hsm stops using its sessions and reconnects.
 */
const CONNECTION_LOST = new Set<number>([
  pkcs11.CKR_SESSION_HANDLE_INVALID,
  pkcs11.CKR_SESSION_CLOSED,
  pkcs11.CKR_DEVICE_REMOVED,
  pkcs11.CKR_TOKEN_NOT_PRESENT,
  pkcs11.CKR_TOKEN_NOT_RECOGNIZED,
  pkcs11.CKR_USER_NOT_LOGGED_IN,
  pkcs11.CKR_DEVICE_ERROR,
  pkcs11.CKR_GENERAL_ERROR,
  pkcs11.CKR_SLOT_ID_INVALID,
  pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED,
]);

/** A login refused for the PIN itself: retrying the same PIN could lock the token. */
const PIN_REFUSED = new Set<number>([
  pkcs11.CKR_PIN_INCORRECT,
  pkcs11.CKR_PIN_INVALID,
  pkcs11.CKR_PIN_LEN_RANGE,
  pkcs11.CKR_PIN_EXPIRED,
  pkcs11.CKR_PIN_LOCKED,
]);

/** Reconnect attempts: the first after 1 s, then backing off to one every 5 s. */
const RECONNECT_FIRST_MS = 1_000;
const RECONNECT_MAX_MS = 5_000;
const RECONNECT_BACKOFF = 1.6;
/**
 * How long a reconnect waits for operations still running on the old
 * sessions before opening new ones (whose handles may reuse the old numbers).
 */
const DRAIN_TIMEOUT_MS = 30_000;

/** The sessions of one connection to the token(s). */
interface Connection {
  pool: SessionPool;
  /** The separate root token (an offline root), when configured and present. */
  rootPool?: SessionPool;
}

class LoginError extends HsmUnavailableError {
  constructor(
    message: string,
    readonly code: number | undefined,
  ) {
    super(message);
  }
}

/**
 * The only door to the HSM: a pool of logged-in sessions on the token found
 * by label, and CA keys addressed by their CKA_LABEL. Callers get WebCrypto
 * keys and providers, never PKCS#11 handles.
 *
 * When the HSM goes away (sessions closed, token removed, login lost), the
 * Hsm marks itself unavailable: every call fails fast with
 * HsmUnavailableError, health() says why, and a background loop reopens
 * the token (found by label again, new sessions, login) until it is back.
 * Operations still running on the old sessions finish or fail there; no
 * new caller ever gets an old session.
 */
export class Hsm implements ModuleUser {
  private shared!: SharedModule;
  /** The module generation the current sessions were opened under. */
  private generation = 0;
  /** The current pool; while unavailable, the last one (retired). */
  private pool!: SessionPool;
  private rootPool?: SessionPool;
  /** Retired pools whose lent sessions are still being given back. */
  private readonly retiring = new Set<SessionPool>();
  private down?: { reason: string; since: number };
  private reconnectTimer?: NodeJS.Timeout;
  private attempts = 0;
  /** A digest of a PIN the token refused: not tried again until the PIN source changes. */
  private refusedPin?: { digest: Buffer; reason: string };
  private readonly pinSalt = crypto.randomBytes(16);
  private readonly keyUseListeners = new Set<KeyUseListener>();
  private readonly availabilityListeners = new Set<AvailabilityListener>();
  /** CKA_ID (hex) by label, for key-use events: labels are never reused. */
  private readonly keyIds = new Map<string, string>();
  private closed = false;

  private constructor(
    private readonly config: HsmConfig,
    /** Set on the embedded default's first start: the PIN files were just generated. */
    readonly pinsGenerated: boolean,
  ) {}

  static open(config: HsmConfig, dataDir: string): Hsm {
    let pinsGenerated = false;
    if (config.embedded) pinsGenerated = prepareEmbeddedToken(dataDir).pinsGenerated;
    const hsm = new Hsm(config, pinsGenerated);
    hsm.shared = acquireModule(config.module, hsm);
    try {
      const mod = hsm.shared.mod;
      if (config.embedded) {
        ensureEmbeddedTokenInitialised(mod, dataDir, config.tokenLabel);
        if (config.rootToken) ensureEmbeddedTokenInitialised(mod, dataDir, config.rootToken.label);
      }
      hsm.adopt(connect(hsm.shared, config, readPin(config.pinSource), "required"));
    } catch (err) {
      releaseModule(hsm.shared, hsm);
      throw err;
    }
    return hsm;
  }

  /** Where root keys are made: the separate root token when configured, else the one token. */
  get rootToken(): { label: string; present: boolean } {
    if (!this.config.rootToken) return { label: this.config.tokenLabel, present: true };
    return { label: this.config.rootToken.label, present: this.rootPool !== undefined };
  }

  get tokenLabel(): string {
    return this.config.tokenLabel;
  }

  get poolStats() {
    return { size: this.pool.size, inUse: this.pool.inUse, waiting: this.pool.waiting };
  }

  /** False while the HSM is unavailable and being reconnected. */
  get available(): boolean {
    return !this.closed && !this.down;
  }

  /** Called after every sign (withSigningKey), generateKey and destroyKey that reached the token. Returns the unsubscribe. */
  onKeyUse(listener: KeyUseListener): () => void {
    this.keyUseListeners.add(listener);
    return () => this.keyUseListeners.delete(listener);
  }

  /** Called when the HSM becomes unavailable and when it is back. Returns the unsubscribe. */
  onAvailability(listener: AvailabilityListener): () => void {
    this.availabilityListeners.add(listener);
    return () => this.availabilityListeners.delete(listener);
  }

  hasKey(label: string): boolean {
    return this.findOn(this.poolFor(label), graphene.ObjectClass.PRIVATE_KEY, label) !== undefined;
  }

  /**
   * Generates a CA key pair on the token: token object, sensitive, never
   * extractable. Refuses to create a second key under an existing label.
   */
  async generateKey(label: string, algorithm: CaKeyAlgorithm, on: "issuing" | "root" = "issuing"): Promise<GeneratedKey> {
    if (this.hasKey(label)) throw new HsmKeyError(`a key labelled "${label}" already exists on the token`);
    const spec = KEY_ALGORITHM_SPECS[algorithm];
    let pool = this.current();
    if (on === "root" && this.config.rootToken) {
      if (!this.rootPool) throw new HsmKeyError(`the root token "${this.config.rootToken.label}" is not present: insert it for the ceremony`);
      pool = this.rootPool;
    }
    return this.keyOperation(label, "generate", pool, async ({ crypto }) => {
      // token/sensitive/label are node-webcrypto-p11's PKCS#11 extensions to the algorithm.
      const params: EcKeyGenParams | RsaHashedKeyGenParams = Object.assign({}, spec.keyParams, { token: true, sensitive: true, label });
      const pair = (await crypto.subtle.generateKey(params, false, ["sign", "verify"])) as CryptoKeyPair;
      const spki = await crypto.subtle.exportKey("spki", pair.publicKey);
      const id = (findObject(crypto.session, graphene.ObjectClass.PRIVATE_KEY, label)!.getAttribute("id") as Buffer).toString("hex");
      this.keyIds.set(label, id);
      return { label, id, algorithm, spki };
    });
  }

  /**
   * Seals a small secret under the named AES-256 secret key on the issuing
   * token (AES-GCM, src/hsm/secret-key.ts), generating the key there on
   * first use. `aad` is bound to the result: decrypt needs the same.
   * Callers on several replicas serialise the first use themselves.
   */
  async encrypt(label: string, plaintext: Buffer, aad: Buffer): Promise<Buffer> {
    return this.keyOperation(label, "encrypt", this.current(), async ({ session }) => {
      const started = performance.now();
      const { sealed, keyId, created } = sealWithSecretKey(session, label, plaintext, aad);
      this.keyIds.set(label, keyId);
      if (created) this.emitKeyUse({ label, operation: "generate", id: keyId, ok: true, ms: performance.now() - started });
      return sealed;
    });
  }

  /** Opens what encrypt sealed; SecretKeyError when the key is absent or the value does not authenticate under it. */
  async decrypt(label: string, sealed: Buffer, aad: Buffer): Promise<Buffer> {
    return this.keyOperation(label, "decrypt", this.current(), async ({ session }) => {
      const { plaintext, keyId } = openWithSecretKey(session, label, sealed, aad);
      this.keyIds.set(label, keyId);
      return plaintext;
    });
  }

  /** The public half of a CA key, SubjectPublicKeyInfo DER. */
  async publicKeySpki(label: string, algorithm: CaKeyAlgorithm): Promise<ArrayBuffer> {
    const pool = this.poolFor(label);
    try {
      return await pool.use(async ({ crypto, session }) => {
        const obj = findObject(session, graphene.ObjectClass.PUBLIC_KEY, label);
        if (!obj) throw new HsmKeyError(`no public key labelled "${label}" on the token`);
        const key = await crypto.keyStorage.getItem(storageId("public", obj), KEY_ALGORITHM_SPECS[algorithm].keyParams, true, ["verify"]);
        return crypto.subtle.exportKey("spki", key);
      });
    } catch (err) {
      throw this.failure(err, pool);
    }
  }

  keyId(label: string): string {
    const obj = this.findOn(this.poolFor(label), graphene.ObjectClass.PRIVATE_KEY, label);
    if (!obj) throw new HsmKeyError(`no private key labelled "${label}" on the token`);
    return (obj.getAttribute("id") as Buffer).toString("hex");
  }

  provenance(label: string): KeyProvenance {
    const pool = this.poolFor(label);
    const obj = this.findOn(pool, graphene.ObjectClass.PRIVATE_KEY, label);
    if (!obj) throw new HsmKeyError(`no private key labelled "${label}" on the token`);
    const a = this.onLookup(pool, () =>
      obj.getAttribute({
        token: null,
        local: null,
        sensitive: null,
        alwaysSensitive: null,
        extractable: null,
        neverExtractable: null,
      }),
    );
    return {
      token: !!a.token,
      local: !!a.local,
      sensitive: !!a.sensitive,
      alwaysSensitive: !!a.alwaysSensitive,
      extractable: !!a.extractable,
      neverExtractable: !!a.neverExtractable,
    };
  }

  /** The values of the private data objects with this label on the (issuing) token; none when there is none. */
  readDataObjects(label: string): Buffer[] {
    const pool = this.current();
    const values = this.onLookup(pool, (s) => readDataObjects(s, label));
    // "None" is believed only if the token still answers.
    const lost = values.length === 0 ? probe(pool) : undefined;
    if (lost) throw this.lost(pool, lost);
    return values;
  }

  /** Stores value as the private data object with this label on the (issuing) token, replacing what was there. */
  writeDataObject(label: string, value: Buffer): void {
    const pool = this.current();
    this.onLookup(pool, (s) => replaceDataObject(s, label, value));
  }

  /**
   * Lends a session's WebCrypto provider and the CA private key on it for
   * the duration of fn. Every CA signature goes through here. Fails fast
   * with HsmUnavailableError while the HSM is away, and with HsmBusyError
   * when every session is lent and the queue is full.
   */
  async withSigningKey<T>(
    label: string,
    algorithm: CaKeyAlgorithm,
    fn: (key: CryptoKey, crypto: SigningCrypto) => Promise<T>,
  ): Promise<T> {
    return this.keyOperation(label, "sign", this.poolFor(label), async (member) => {
      try {
        return await fn(privateKeyOn(member, label, algorithm, this.keyIds), member.signing);
      } catch (err) {
        // The cached handle may name a key destroyed elsewhere: look it up again next time.
        if (err instanceof pkcs11.Pkcs11Error && (err.code === pkcs11.CKR_OBJECT_HANDLE_INVALID || err.code === pkcs11.CKR_KEY_HANDLE_INVALID)) {
          member.keys.delete(label);
        }
        throw err;
      }
    });
  }

  /**
   * Destroys a key pair on the token (C_DestroyObject). Callers decide that
   * it is no longer needed; this only makes sure no session keeps using it.
   */
  destroyKey(label: string): boolean {
    const pool = this.poolFor(label);
    const started = performance.now();
    let id = this.keyIds.get(label);
    try {
      pool.forEach((m) => m.keys.delete(label));
      let destroyed = false;
      for (const cls of [graphene.ObjectClass.PRIVATE_KEY, graphene.ObjectClass.PUBLIC_KEY]) {
        const obj = this.findOn(pool, cls, label);
        if (obj) {
          id ??= this.onLookup(pool, () => (obj.getAttribute("id") as Buffer).toString("hex"));
          this.onLookup(pool, () => obj.destroy());
          destroyed = true;
        }
      }
      this.keyIds.delete(label);
      this.emitKeyUse({ label, operation: "destroy", id, ok: true, ms: performance.now() - started });
      return destroyed;
    } catch (err) {
      this.emitKeyUse({ label, operation: "destroy", id, ok: false, ms: performance.now() - started, error: failureReason(err) });
      throw err;
    }
  }

  /** The CA's view of a key on this HSM. */
  signer(label: string, algorithm: CaKeyAlgorithm): CaSigner {
    return {
      signingAlgorithm: KEY_ALGORITHM_SPECS[algorithm].signParams,
      use: (fn) => this.withSigningKey(label, algorithm, fn),
    };
  }

  /**
   * Asks the token something cheap: is the lookup session still open and
   * logged in, and does the token answer? When not, the Hsm becomes
   * unavailable (and reconnects); the detail says why.
   */
  health(): { ok: true } | { ok: false; detail: string } {
    if (this.closed) return { ok: false, detail: "the HSM connection is closed" };
    if (!this.down) {
      const lost = probe(this.pool);
      if (lost) this.markDown(lost);
    }
    if (this.down) return { ok: false, detail: `${this.down.reason}; reconnecting since ${new Date(this.down.since).toISOString()}` };
    return { ok: true };
  }

  /**
   * Lets go of the sessions (each lent one when it is given back) and of the
   * module once they are all back.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    const pools = new Set([this.pool, ...(this.rootPool ? [this.rootPool] : []), ...this.retiring]);
    this.rootPool = undefined;
    for (const p of pools) void p.retire("the HSM connection is closed");
    const release = () => releaseModule(this.shared, this);
    if ([...pools].every((p) => p.inUse === 0)) release();
    else void Promise.all([...pools].map((p) => p.drained())).then(release);
  }

  /** Another user of the module re-initialised it: every session handle of ours is gone. */
  moduleReinitialised(): void {
    const reason = "the PKCS#11 module was re-initialised";
    for (const p of [this.pool, this.rootPool, ...this.retiring]) p?.abandon(reason);
    this.retiring.clear();
    this.markDown(reason);
  }

  // ---- connection state ----

  private adopt(connection: Connection): void {
    this.pool = connection.pool;
    this.rootPool = connection.rootPool;
    this.generation = this.shared.generation;
  }

  /** The pool to use now; throws while the HSM is unavailable. */
  private current(): SessionPool {
    if (this.closed) throw new HsmUnavailableError("the HSM connection is closed");
    if (this.down) throw new HsmUnavailableError(`the HSM is unavailable: ${this.down.reason}; reconnecting`);
    return this.pool;
  }

  /** The pool of the token that holds this key (the root token's first). */
  private poolFor(label: string): SessionPool {
    const pool = this.current();
    const root = this.rootPool;
    if (root) {
      try {
        if (findObject(root.lookup, graphene.ObjectClass.PRIVATE_KEY, label)) return root;
      } catch (err) {
        if (!isConnectionLost(err)) throw err;
        this.lost(root, pkcs11Reason(err));
      }
    }
    return pool;
  }

  /** A synchronous call on the pool's lookup session; losing the HSM there makes it unavailable. */
  private onLookup<T>(pool: SessionPool, fn: (session: graphene.Session) => T): T {
    try {
      return fn(pool.lookup);
    } catch (err) {
      throw this.failure(err, pool);
    }
  }

  /**
   * Finds a token object by label. "Not there" is believed only if the token
   * still answers: a token that went away (SoftHSM2: its directory) finds
   * nothing at all.
   */
  private findOn(pool: SessionPool, cls: graphene.ObjectClass, label: string): graphene.SessionObject | undefined {
    const found = this.onLookup(pool, (s) => findObject(s, cls, label));
    if (found) return found;
    const lost = probe(pool);
    if (lost) throw this.lost(pool, lost);
    return undefined;
  }

  /** Runs fn on a lent session and tells the key-use listeners how it went. */
  private async keyOperation<T>(label: string, operation: KeyUseEvent["operation"], pool: SessionPool, fn: (member: PooledSession) => Promise<T>): Promise<T> {
    let started: number | undefined;
    try {
      const result = await pool.use((member) => {
        started = performance.now();
        return fn(member);
      });
      this.emitKeyUse({ label, operation, id: this.keyIds.get(label), ok: true, ms: performance.now() - started! });
      return result;
    } catch (err) {
      const error = this.failure(err, pool);
      // A call refused before it reached the token (unavailable, queue full) used no key.
      if (started !== undefined) this.emitKeyUse({ label, operation, id: this.keyIds.get(label), ok: false, ms: performance.now() - started, error: failureReason(err) });
      throw error;
    }
  }

  /**
   * What to throw for an error seen on this pool: when it says (or the token
   * says, asked right after) that the HSM is gone, the Hsm becomes
   * unavailable and the caller gets HsmUnavailableError.
   */
  private failure(err: unknown, pool: SessionPool): unknown {
    if (err instanceof HsmUnavailableError) return err;
    if (pool.retired) {
      // A call that was running when the HSM went away.
      return isConnectionLost(err) ? new HsmUnavailableError(`the HSM is unavailable: ${pkcs11Reason(err)}; reconnecting`, { cause: err }) : err;
    }
    const lost = isConnectionLost(err) ? pkcs11Reason(err) : probe(pool);
    if (!lost) return err;
    return this.lost(pool, lost, err);
  }

  /** The token behind this pool is gone: the root token's is dropped, the main one's reconnected. */
  private lost(pool: SessionPool, reason: string, cause?: unknown): HsmUnavailableError {
    if (pool === this.rootPool) {
      this.rootPool = undefined;
      this.retire(pool, reason);
      return new HsmUnavailableError(`the root token is unavailable: ${reason}`, { cause });
    }
    if (pool === this.pool) this.markDown(reason);
    return new HsmUnavailableError(`the HSM is unavailable: ${reason}; reconnecting`, { cause });
  }

  private retire(pool: SessionPool, reason: string): void {
    this.retiring.add(pool);
    void pool.retire(reason).then(() => this.retiring.delete(pool));
  }

  private markDown(reason: string): void {
    if (this.closed || this.down) return;
    this.down = { reason, since: Date.now() };
    this.retire(this.pool, reason);
    if (this.rootPool) this.retire(this.rootPool, reason);
    this.rootPool = undefined;
    this.attempts = 0;
    this.emitAvailability({ available: false, reason });
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_FIRST_MS * RECONNECT_BACKOFF ** this.attempts);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.reconnect();
    }, delay);
    this.reconnectTimer.unref();
  }

  /**
   * One attempt: wait until nothing of ours runs on the old sessions (the
   * module may give their handle numbers to new sessions), find the token by
   * label, open new sessions and log in. When the token cannot be found or
   * read, the module is re-initialised first (SoftHSM2 sees a token that
   * came back only after C_Finalize/C_Initialize).
   */
  private async reconnect(): Promise<void> {
    if (this.closed || !this.down) return;
    this.attempts++;
    try {
      await this.drainRetired();
      if (this.closed) return;
      let connection: Connection;
      try {
        connection = this.connectAgain();
      } catch (err) {
        if (err instanceof LoginError || err instanceof PinError) throw err;
        // A no-op when another user re-initialised it since our sessions were opened: just try again.
        await this.shared.reinitialise(this, this.generation);
        this.generation = this.shared.generation;
        if (this.closed) return;
        connection = this.connectAgain();
      }
      if (this.closed) {
        connection.rootPool?.close();
        connection.pool.close();
        return;
      }
      const since = this.down.since;
      this.adopt(connection);
      this.down = undefined;
      this.attempts = 0;
      this.emitAvailability({ available: true, downMs: Date.now() - since });
    } catch (err) {
      if (this.closed || !this.down) return;
      this.down = { reason: failureReason(err), since: this.down.since };
      this.scheduleReconnect();
    }
  }

  /** Waits for the retired pools' lent sessions (bounded); what is still lent then is abandoned, never closed. */
  private async drainRetired(): Promise<void> {
    if (this.retiring.size === 0) return;
    const pools = [...this.retiring];
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, DRAIN_TIMEOUT_MS);
      timer.unref();
    });
    await Promise.race([Promise.all(pools.map((p) => p.drained())), timeout]);
    clearTimeout(timer);
    for (const p of pools) {
      if (p.inUse > 0) p.abandon("still in use after the HSM went away");
      this.retiring.delete(p);
    }
  }

  /** Opens the token again, without re-trying a PIN the token refused until the PIN changes. */
  private connectAgain(): Connection {
    const pin = readPin(this.config.pinSource);
    const digest = crypto.createHash("sha256").update(this.pinSalt).update(pin).digest();
    if (this.refusedPin && crypto.timingSafeEqual(digest, this.refusedPin.digest)) {
      throw new LoginError(`${this.refusedPin.reason}; not retried until the PIN in ${describePinSource(this.config.pinSource)} changes`, undefined);
    }
    try {
      const connection = connect(this.shared, this.config, pin, "optional");
      this.refusedPin = undefined;
      return connection;
    } catch (err) {
      if (err instanceof LoginError && err.code !== undefined && PIN_REFUSED.has(err.code)) this.refusedPin = { digest, reason: err.message };
      throw err;
    }
  }

  private emitKeyUse(event: KeyUseEvent): void {
    event.ms = Math.round(event.ms * 1000) / 1000;
    if (event.id === undefined) delete event.id;
    for (const listener of this.keyUseListeners) {
      try {
        listener(event);
      } catch {
        // a listener never breaks a signature
      }
    }
  }

  private emitAvailability(event: AvailabilityEvent): void {
    for (const listener of this.availabilityListeners) {
      try {
        listener(event);
      } catch {
        // nor a change of state
      }
    }
  }
}

/**
 * Finds the token(s) by label, opens the sessions and logs in. An absent
 * root token is not an error here (an offline root is present only for
 * ceremonies); with root "optional" (reconnecting), neither is a root
 * token that cannot be opened.
 */
function connect(shared: SharedModule, config: HsmConfig, pin: string, root: "required" | "optional"): Connection {
  const slot = findSlotByTokenLabel(shared.mod, config.tokenLabel);
  if (!slot) throw new HsmUnavailableError(`no token labelled "${config.tokenLabel}" in ${config.module}`);
  const options = { queueLimit: config.queueLimit, tracker: shared };
  const pool = new SessionPool(slot, config.sessions, options);
  let rootPool: SessionPool | undefined;
  try {
    login(pool.lookup, pin);
    if (config.rootToken) {
      try {
        const rootSlot = findSlotByTokenLabel(shared.mod, config.rootToken.label);
        if (rootSlot) {
          rootPool = new SessionPool(rootSlot, 1, options);
          login(rootPool.lookup, readPin(config.rootToken.pinSource));
        }
      } catch (err) {
        rootPool?.close();
        rootPool = undefined;
        if (root === "required") throw err;
      }
    }
  } catch (err) {
    pool.close();
    throw err;
  }
  return { pool, rootPool };
}

/** Is the lookup session still open and logged in, and does the token answer? The reason when not. */
function probe(pool: SessionPool): string | undefined {
  try {
    const session = pool.lookup;
    const info = session.lib.C_GetSessionInfo(session.handle);
    if (info.state !== CKS_RW_USER_FUNCTIONS) return "the session is not logged in";
    session.lib.C_GetTokenInfo(pool.slot.handle);
    return undefined;
  } catch (err) {
    return pkcs11Reason(err);
  }
}

function isConnectionLost(err: unknown): boolean {
  return err instanceof pkcs11.Pkcs11Error && CONNECTION_LOST.has(err.code);
}

/** For events and states: a PKCS#11 code name, hsm-ca's own message, or an error class name; nothing secret. */
function failureReason(err: unknown): string {
  if (err instanceof pkcs11.Pkcs11Error) return pkcs11Reason(err);
  if (err instanceof HsmUnavailableError || err instanceof HsmKeyError || err instanceof SecretKeyError || err instanceof PinError) return err.message;
  return err instanceof Error ? err.constructor.name : "error";
}

function describePinSource(source: HsmConfig["pinSource"]): string {
  return "env" in source ? `$${source.env}` : source.file;
}

/** The CA private key on this session (cached per session); notes its CKA_ID in ids. */
function privateKeyOn(member: PooledSession, label: string, algorithm: CaKeyAlgorithm, ids: Map<string, string>): Pkcs11SigningKey {
  const cached = member.keys.get(label);
  if (cached) return cached;
  const obj = findObject(member.session, graphene.ObjectClass.PRIVATE_KEY, label);
  if (!obj) throw new HsmKeyError(`no private key labelled "${label}" on the token`);
  ids.set(label, (obj.getAttribute("id") as Buffer).toString("hex"));
  const key = new Pkcs11SigningKey(keyAlgorithm(algorithm), obj.handle);
  member.keys.set(label, key);
  return key;
}

/** The CryptoKey.algorithm WebCrypto would report for a CA key of this kind. */
function keyAlgorithm(algorithm: CaKeyAlgorithm): EcKeyAlgorithm | RsaHashedKeyAlgorithm {
  const params = KEY_ALGORITHM_SPECS[algorithm].keyParams;
  if ("namedCurve" in params) return { name: params.name, namedCurve: params.namedCurve };
  return { name: params.name, modulusLength: params.modulusLength, publicExponent: params.publicExponent, hash: { name: params.hash as string } };
}

function findObject(session: graphene.Session, cls: graphene.ObjectClass, label: string): graphene.SessionObject | undefined {
  const found = session.find({ class: cls, label, token: true });
  if (found.length > 1) throw new HsmKeyError(`${found.length} objects share the label "${label}" on the token`);
  return found.length === 1 ? found.items(0) : undefined;
}

/** node-webcrypto-p11's key storage index: class, handle and CKA_ID. */
function storageId(kind: "private" | "public", obj: graphene.SessionObject, ckaId = (obj.getAttribute("id") as Buffer).toString("hex")): string {
  return `${kind}-${obj.handle.toString("hex")}-${ckaId}`;
}

function login(session: graphene.Session, pin: string): void {
  try {
    session.login(pin, graphene.UserType.USER);
  } catch (err) {
    if (err instanceof pkcs11.Pkcs11Error && err.code === pkcs11.CKR_USER_ALREADY_LOGGED_IN) return;
    throw new LoginError(`HSM login failed: ${pkcs11Reason(err)}`, err instanceof pkcs11.Pkcs11Error ? err.code : undefined);
  }
}

/** The PKCS#11 return code's name only: never anything that could carry a secret. */
export function pkcs11Reason(err: unknown): string {
  if (err instanceof pkcs11.Pkcs11Error) {
    const name = Object.entries(pkcs11).find(([k, v]) => k.startsWith("CKR_") && v === err.code)?.[0];
    return name ?? `PKCS#11 error 0x${err.code.toString(16)}`;
  }
  return err instanceof Error ? err.message : String(err);
}
