import crypto from "node:crypto";
import * as graphene from "graphene-pk11";
// Default import: pkcs11js is CommonJS and its constants are not visible as ESM named exports.
import pkcs11 from "pkcs11js";
import { ensureEmbeddedTokenInitialised, prepareEmbeddedToken } from "./embedded-softhsm.ts";
import { failureReason, HsmKeyError, HsmUnavailableError, LoginError, PinError, pkcs11Reason } from "./errors.ts";
import { poolSizeFor, tokenCapabilities, type TokenCapabilities } from "./capabilities.ts";
import type { HsmEvents } from "./events.ts";
import type { HsmConfig } from "./hsm-config.ts";
import { findObject } from "./key-objects.ts";
import { acquireModule, findSlotByTokenLabel, releaseModule, type ModuleUser, type SharedModule } from "./module.ts";
import { readPin } from "./pin.ts";
import { signThreadsFor } from "./sign-threads.ts";
import { SessionPool } from "./session-pool.ts";

/** PKCS#11 session state "read/write, user logged in" (pkcs11js does not export CKS_*). */
const CKS_RW_USER_FUNCTIONS = 3;

/**
 * Return codes that mean the HSM, the token, the session or the login is
 * gone: the connection stops using its sessions and reconnects.
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
/**
 * At most one re-read of the object store (C_Finalize + C_Initialize, for a
 * key not found on a module that reads its objects only at C_Initialize)
 * in this time: a key that is really missing must not make the module
 * re-initialise under every signature.
 */
const REFRESH_MIN_INTERVAL_MS = 5_000;

/** The sessions of one connection to the token(s). */
interface Sessions {
  pool: SessionPool;
  /** What the issuing token's module can do, asked when the sessions were opened. */
  capabilities: TokenCapabilities;
  /** The separate root token (an offline root), when configured and present. */
  rootPool?: SessionPool;
}

/**
 * The connection to the token(s): a pool of logged-in sessions on the token
 * found by label (and one on the root token, when configured), and the
 * state of the HSM being there.
 *
 * When the HSM goes away (sessions closed, token removed, login lost), the
 * connection marks itself unavailable: every call fails fast with
 * HsmUnavailableError, health() says why, and a background loop reopens
 * the token (found by label again, new sessions, login) until it is back.
 * Operations still running on the old sessions finish or fail there; no
 * new caller ever gets an old session.
 */
export class HsmConnection implements ModuleUser {
  private shared!: SharedModule;
  /** The module generation the current sessions were opened under. */
  private generation = 0;
  /** The current pool; while unavailable, the last one (retired). */
  private pool!: SessionPool;
  private rootPool?: SessionPool;
  private caps!: TokenCapabilities;
  /** Retired pools whose lent sessions are still being given back. */
  private readonly retiring = new Set<SessionPool>();
  private down?: { reason: string; since: number };
  private reconnectTimer?: NodeJS.Timeout;
  private attempts = 0;
  /** A digest of a PIN the token refused: not tried again until the PIN source changes. */
  private refusedPin?: { digest: Buffer; reason: string };
  private readonly pinSalt = crypto.randomBytes(16);
  private closed = false;
  /** A re-read of the module's object store in progress (see refreshObjects). */
  private refreshing?: Promise<void>;
  private lastRefreshAt = -Infinity;

  private constructor(
    private readonly config: HsmConfig,
    private readonly events: HsmEvents,
    /** Set on the embedded default's first start: the PIN files were just generated. */
    readonly pinsGenerated: boolean,
  ) {}

  static open(config: HsmConfig, dataDir: string, events: HsmEvents): HsmConnection {
    let pinsGenerated = false;
    if (config.embedded) pinsGenerated = prepareEmbeddedToken(dataDir).pinsGenerated;
    const connection = new HsmConnection(config, events, pinsGenerated);
    connection.shared = acquireModule(config.module, connection);
    try {
      const mod = connection.shared.mod;
      if (config.embedded) {
        ensureEmbeddedTokenInitialised(mod, dataDir, config.tokenLabel);
        if (config.rootToken) ensureEmbeddedTokenInitialised(mod, dataDir, config.rootToken.label);
      }
      connection.adopt(connect(connection.shared, config, readPin(config.pinSource), "required"));
    } catch (err) {
      releaseModule(connection.shared, connection);
      throw err;
    }
    return connection;
  }

  get rootToken(): { label: string; present: boolean } {
    if (!this.config.rootToken) return { label: this.config.tokenLabel, present: true };
    return { label: this.config.rootToken.label, present: this.rootPool !== undefined };
  }

  get tokenLabel(): string {
    return this.config.tokenLabel;
  }

  /** What the issuing token's module can do (mechanisms, session limit, wrapping). */
  get capabilities(): TokenCapabilities {
    return this.caps;
  }

  /** False when the module refused CKF_OS_LOCKING_OK: every call then runs on the main thread. */
  get osLocking(): boolean {
    return this.shared.osLocking;
  }

  get poolStats() {
    return { size: this.pool.size, inUse: this.pool.inUse, waiting: this.pool.waiting };
  }

  get available(): boolean {
    return !this.closed && !this.down;
  }

  health(): { ok: true } | { ok: false; detail: string } {
    if (this.closed) return { ok: false, detail: "the HSM connection is closed" };
    if (!this.down && !this.refreshing) {
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

  // ---- the pools, for the key manager ----

  /** The pool to use now; throws while the HSM is unavailable. */
  current(): SessionPool {
    if (this.closed) throw new HsmUnavailableError("the HSM connection is closed");
    if (this.down) throw new HsmUnavailableError(`the HSM is unavailable: ${this.down.reason}; reconnecting`);
    return this.pool;
  }

  /** The pool of the token that holds this key (the root token's first). */
  poolFor(label: string): SessionPool {
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

  /** Where a new key is made: the root token's pool for a root key when a root token is configured, else the issuing token's. */
  poolForNewKey(on: "issuing" | "root"): SessionPool {
    const pool = this.current();
    if (on !== "root" || !this.config.rootToken) return pool;
    if (!this.rootPool) throw new HsmKeyError(`the root token "${this.config.rootToken.label}" is not present: insert it for the ceremony`);
    return this.rootPool;
  }

  /** A synchronous call on the pool's lookup session; losing the HSM there makes it unavailable. */
  onLookup<T>(pool: SessionPool, fn: (session: graphene.Session) => T): T {
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
  findOn(pool: SessionPool, cls: graphene.ObjectClass, label: string): graphene.SessionObject | undefined {
    const found = this.onLookup(pool, (s) => findObject(s, cls, label));
    if (found) return found;
    this.requireAnswer(pool);
    return undefined;
  }

  /** Throws HsmUnavailableError (and reconnects) unless the token behind this pool still answers. */
  requireAnswer(pool: SessionPool): void {
    const lost = probe(pool);
    if (lost) throw this.lost(pool, lost);
  }

  /**
   * What to throw for an error seen on this pool: when it says (or the token
   * says, asked right after) that the HSM is gone, the connection becomes
   * unavailable and the caller gets HsmUnavailableError.
   */
  failure(err: unknown, pool: SessionPool): unknown {
    if (err instanceof HsmUnavailableError) return err;
    if (pool.retired) {
      // A call that was running when the HSM went away.
      return isConnectionLost(err) ? new HsmUnavailableError(`the HSM is unavailable: ${pkcs11Reason(err)}; reconnecting`, { cause: err }) : err;
    }
    const lost = isConnectionLost(err) ? pkcs11Reason(err) : probe(pool);
    if (!lost) return err;
    return this.lost(pool, lost, err);
  }

  // ---- another process's new keys ----

  /**
   * After a call on `pool` failed with a key not found (`missing`) or with
   * PoolRetiredError: should the caller try once more, on the pool current
   * now? Yes when the sessions were replaced since (a re-read of the object
   * store or a reconnect: waits for a re-read in progress), or, for a missing
   * key on a module that reads its object store only at C_Initialize
   * (tpm2-pkcs11), once the module has been re-initialised now. Only failed
   * calls come here: the signing path itself is unchanged.
   */
  async lookAgainAfter(pool: SessionPool, missing: boolean): Promise<boolean> {
    if (this.refreshing) await this.refreshing;
    if (this.closed || this.down) return false;
    if (pool !== this.pool && pool !== this.rootPool) return true;
    if (!missing || !this.startRefresh()) return false;
    await this.refreshing;
    return !this.closed && !this.down && pool !== this.pool;
  }

  /**
   * A key expected on the token was not found by a synchronous lookup
   * (hasKey): on a module that reads its object store only at C_Initialize,
   * re-read it in the background, so that the next lookup sees keys another
   * process made (`hsm-ca rotate`). Nothing on other modules.
   */
  refreshObjects(): void {
    this.startRefresh();
  }

  /**
   * Another process changed the keys (a rotation noticed): re-read the
   * object store now, whenever the last re-read was, on a module that reads
   * it only at C_Initialize. Resolves once done (or at once on others).
   */
  async rereadObjects(): Promise<void> {
    if (this.refreshing) await this.refreshing;
    if (this.startRefresh(true)) await this.refreshing;
  }

  /** Starts a re-read unless one runs, one ran recently (unless `now`), or the module sees other processes' objects anyway. */
  private startRefresh(now = false): boolean {
    if (this.refreshing) return true;
    if (this.closed || this.down || !this.caps.objectsReadAtInitialize) return false;
    if (!now && performance.now() - this.lastRefreshAt < REFRESH_MIN_INTERVAL_MS) return false;
    this.lastRefreshAt = performance.now();
    this.refreshing = this.refresh().finally(() => {
      this.refreshing = undefined;
    });
    return true;
  }

  /**
   * Re-reads the object store: the current sessions stop being lent
   * (callers refused meanwhile look again once this is done, see
   * lookAgainAfter), C_Finalize + C_Initialize once nothing runs on them,
   * new sessions and login. Not an outage: no availability event, unless
   * the token cannot be opened again (then it is one, and reconnects).
   */
  private async refresh(): Promise<void> {
    const reason = "re-reading the token's objects (a key made by another process)";
    const old = [this.pool, ...(this.rootPool ? [this.rootPool] : [])];
    for (const p of old) this.retire(p, reason);
    try {
      await this.shared.reinitialise(this, this.generation);
      this.generation = this.shared.generation;
      // The module's handles are gone: the old sessions are never closed now (their numbers may be reused).
      for (const p of old) {
        p.abandon(reason);
        this.retiring.delete(p);
      }
      if (this.closed || this.down) return;
      const sessions = this.connectAgain();
      if (this.closed || this.down) {
        sessions.rootPool?.close();
        sessions.pool.close();
        return;
      }
      this.adopt(sessions);
    } catch (err) {
      this.generation = this.shared.generation;
      this.refreshing = undefined;
      this.markDown(failureReason(err));
    }
  }

  // ---- losing the HSM and getting it back ----

  private adopt(sessions: Sessions): void {
    this.pool = sessions.pool;
    this.rootPool = sessions.rootPool;
    this.caps = sessions.capabilities;
    this.generation = this.shared.generation;
  }

  /** The token behind this pool is gone: the root token's is dropped, the main one's reconnected. */
  private lost(pool: SessionPool, reason: string, cause?: unknown): HsmUnavailableError {
    if (pool === this.rootPool) {
      this.rootPool = undefined;
      this.retire(pool, reason);
      return new HsmUnavailableError(`the root token is unavailable: ${reason}`, { cause });
    }
    // While the object store is re-read, the current pool is retired on purpose: no outage.
    if (pool === this.pool && !this.refreshing) this.markDown(reason);
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
    this.events.availabilityChanged({ available: false, reason });
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
      if (this.refreshing) await this.refreshing;
      await this.drainRetired();
      if (this.closed) return;
      let sessions: Sessions;
      try {
        sessions = this.connectAgain();
      } catch (err) {
        // A PIN the token refused is not tried again (it could lock the token); any other failure,
        // a login's too, may be the module's stale state: tpm2-pkcs11 answers C_Login with
        // CKR_GENERAL_ERROR after the TPM restarted, until it is re-initialised.
        if (err instanceof PinError || (err instanceof LoginError && (err.code === undefined || PIN_REFUSED.has(err.code)))) throw err;
        // A no-op when another user re-initialised it since our sessions were opened: just try again.
        try {
          await this.shared.reinitialise(this, this.generation);
        } finally {
          // Also after a failed C_Initialize: the next attempt re-initialises again.
          this.generation = this.shared.generation;
        }
        if (this.closed) return;
        sessions = this.connectAgain();
      }
      if (this.closed) {
        sessions.rootPool?.close();
        sessions.pool.close();
        return;
      }
      const since = this.down.since;
      this.adopt(sessions);
      this.down = undefined;
      this.attempts = 0;
      this.events.availabilityChanged({ available: true, downMs: Date.now() - since });
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
  private connectAgain(): Sessions {
    const pin = readPin(this.config.pinSource);
    const digest = crypto.createHash("sha256").update(this.pinSalt).update(pin).digest();
    if (this.refusedPin && crypto.timingSafeEqual(digest, this.refusedPin.digest)) {
      throw new LoginError(`${this.refusedPin.reason}; not retried until the PIN in ${describePinSource(this.config.pinSource)} changes`, undefined);
    }
    try {
      const sessions = connect(this.shared, this.config, pin, "optional");
      this.refusedPin = undefined;
      return sessions;
    } catch (err) {
      if (err instanceof LoginError && err.code !== undefined && PIN_REFUSED.has(err.code)) this.refusedPin = { digest, reason: err.message };
      throw err;
    }
  }
}

/**
 * Finds the token(s) by label, opens the sessions and logs in. An absent
 * root token is not an error here (an offline root is present only for
 * ceremonies); with root "optional" (reconnecting), neither is a root
 * token that cannot be opened.
 */
function connect(shared: SharedModule, config: HsmConfig, pin: string, root: "required" | "optional"): Sessions {
  const slot = findSlotByTokenLabel(shared.mod, config.tokenLabel);
  if (!slot) throw new HsmUnavailableError(`no token labelled "${config.tokenLabel}" in ${config.module}`);
  const capabilities = tokenCapabilities(slot, config.module);
  const signing = { rsaHashed: capabilities.rsaHashed, synchronous: !shared.osLocking, threads: shared.osLocking ? signThreadsFor(config.module) : undefined };
  const options = { queueLimit: config.queueLimit, tracker: shared, signing };
  const pool = new SessionPool(slot, poolSizeFor(config.sessions, capabilities), options);
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
  return { pool, rootPool, capabilities };
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

function describePinSource(source: HsmConfig["pinSource"]): string {
  return "env" in source ? `$${source.env}` : source.file;
}

function login(session: graphene.Session, pin: string): void {
  try {
    session.login(pin, graphene.UserType.USER);
  } catch (err) {
    if (err instanceof pkcs11.Pkcs11Error && err.code === pkcs11.CKR_USER_ALREADY_LOGGED_IN) return;
    throw new LoginError(`HSM login failed: ${pkcs11Reason(err)}`, err instanceof pkcs11.Pkcs11Error ? err.code : undefined);
  }
}
