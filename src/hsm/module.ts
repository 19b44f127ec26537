import * as graphene from "graphene-pk11";
// Default import: pkcs11js is CommonJS and its constants are not visible as ESM named exports.
import pkcs11 from "pkcs11js";
import { HsmUnavailableError } from "./errors.ts";

/**
 * OS locking: without it, concurrent calls from libuv worker threads
 * corrupted SoftHSM2's memory (see ../shared/notes/hsm.md).
 */
export const MODULE_INIT_OPTIONS = { flags: pkcs11.CKF_OS_LOCKING_OK };

/** Told when the module was finalised and initialised again: every session it had is gone. */
export interface ModuleUser {
  /**
   * Forget every session handle (never close one: after C_Initialize the same
   * numbers may name another user's new sessions). Called synchronously,
   * while no operation runs on a worker thread.
   */
  moduleReinitialised(): void;
}

/**
 * One initialised PKCS#11 module per library path per process: C_Initialize
 * may run only once, and every session of the process shares it. Counts its
 * users (C_Finalize when the last one lets go) and the operations running on
 * worker threads (leases), so that it is never finalised under one.
 */
export class SharedModule {
  private readonly users = new Set<ModuleUser>();
  private active = 0;
  private idleWaiters: Array<() => void> = [];
  /** Bumped by every re-initialisation. */
  generation = 0;
  /**
   * False when the module refused CKF_OS_LOCKING_OK (CKR_CANT_LOCK) and was
   * initialised without locking: then it must never be called from two
   * threads at once, so every call (signatures too) runs on the main thread.
   */
  osLocking = true;

  constructor(
    readonly library: string,
    readonly mod: graphene.Module,
  ) {}

  get userCount(): number {
    return this.users.size;
  }

  /** An operation that may run on a worker thread starts (a session is lent out). */
  begin(): void {
    this.active++;
  }

  end(): void {
    if (--this.active > 0) return;
    this.active = 0;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  /** Resolves true once no operation runs, false after timeoutMs. */
  private whenIdle(timeoutMs: number): Promise<boolean> {
    if (this.active === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      timer.unref();
      this.idleWaiters.push(done);
    });
  }

  /**
   * C_Finalize then C_Initialize: some modules (SoftHSM2 among them) only
   * see a token that went away and came back after this. Waits until no
   * operation runs anywhere in the process (bounded), then, in one
   * synchronous step, tells every other user that its sessions are gone and
   * re-initialises. A user whose generation is already behind does nothing:
   * someone else re-initialised since it last connected.
   */
  async reinitialise(requester: ModuleUser, seenGeneration: number, timeoutMs = 10_000): Promise<void> {
    if (seenGeneration !== this.generation) return;
    if (!(await this.whenIdle(timeoutMs))) {
      throw new HsmUnavailableError(`cannot re-initialise the PKCS#11 module ${this.library}: ${this.active} operations are still running`);
    }
    // Checked again: while waiting, another user may have done it, the requester may have let go
    // (closed: the module may even be finalised for good), or an operation started.
    if (seenGeneration !== this.generation || !this.users.has(requester) || loaded.get(this.library) !== this) return;
    if (this.active > 0) throw new HsmUnavailableError(`cannot re-initialise the PKCS#11 module ${this.library}: it is in use`);
    for (const user of this.users) if (user !== requester) user.moduleReinitialised();
    try {
      this.mod.finalize();
    } catch {
      // not initialised any more: fine, it is initialised below
    }
    this.generation++;
    this.osLocking = initialise(this.mod);
  }

  /** @internal */
  addUser(user: ModuleUser): void {
    this.users.add(user);
  }

  /** @internal Returns true when that was the last user. */
  removeUser(user: ModuleUser): boolean {
    this.users.delete(user);
    return this.users.size === 0;
  }
}

const loaded = new Map<string, SharedModule>();

/**
 * C_Initialize with CKF_OS_LOCKING_OK; a module that cannot lock
 * (CKR_CANT_LOCK: some vendors' single-threaded libraries) is initialised
 * without it. Returns whether OS locking is on.
 */
function initialise(mod: graphene.Module): boolean {
  try {
    mod.initialize(MODULE_INIT_OPTIONS);
    return true;
  } catch (err) {
    if (err instanceof pkcs11.Pkcs11Error && err.code === pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) return true;
    if (!(err instanceof pkcs11.Pkcs11Error && err.code === pkcs11.CKR_CANT_LOCK)) throw err;
  }
  try {
    mod.initialize({ flags: 0 });
  } catch (err) {
    if (!(err instanceof pkcs11.Pkcs11Error && err.code === pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) throw err;
  }
  return false;
}

/** The process's module for this library, loaded and initialised on first use. */
export function acquireModule(library: string, user: ModuleUser): SharedModule {
  let shared = loaded.get(library);
  if (!shared) {
    let mod: graphene.Module;
    try {
      mod = graphene.Module.load(library, "hsm-ca");
    } catch (err) {
      throw new HsmUnavailableError(`cannot load the PKCS#11 module ${library}: ${(err as Error).message}`);
    }
    const osLocking = initialise(mod);
    shared = new SharedModule(library, mod);
    shared.osLocking = osLocking;
    loaded.set(library, shared);
  }
  shared.addUser(user);
  return shared;
}

/**
 * C_Finalize once the last user in this process lets go. The caller makes
 * sure none of its operations still runs (its pools are drained).
 */
export function releaseModule(shared: SharedModule, user: ModuleUser): void {
  if (!shared.removeUser(user) || loaded.get(shared.library) !== shared) return;
  loaded.delete(shared.library);
  try {
    shared.mod.finalize();
  } catch {
    // already finalised
  }
}

/**
 * Tokens are found by label: slot ids change when a token is initialised.
 * A slot whose token cannot be read (C_GetTokenInfo fails: a token going
 * away) is skipped, unless no slot has the label: then that error is thrown,
 * since the token may be the one behind it.
 */
export function findSlotByTokenLabel(mod: graphene.Module, label: string): graphene.Slot | undefined {
  const slots = mod.getSlots(true);
  let failure: unknown;
  for (let i = 0; i < slots.length; i++) {
    const slot = slots.items(i);
    let token: graphene.Token;
    try {
      token = slot.getToken();
    } catch (err) {
      failure ??= err;
      continue;
    }
    if (token.label.trim() === label && token.flags & graphene.TokenFlag.TOKEN_INITIALIZED) return slot;
  }
  if (failure) throw failure;
  return undefined;
}

export function findFreeSlot(mod: graphene.Module): graphene.Slot | undefined {
  const slots = mod.getSlots(true);
  for (let i = 0; i < slots.length; i++) {
    const slot = slots.items(i);
    if (!(slot.getToken().flags & graphene.TokenFlag.TOKEN_INITIALIZED)) return slot;
  }
  return undefined;
}
