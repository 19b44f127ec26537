import * as graphene from "graphene-pk11";
// Default import: pkcs11js is CommonJS and its constants are not visible as ESM named exports.
import pkcs11 from "pkcs11js";

/**
 * One initialised PKCS#11 module per library path per process: C_Initialize
 * may run only once, and every session of the process shares it.
 */
const loaded = new Map<string, { mod: graphene.Module; users: number }>();

export class HsmUnavailableError extends Error {}

/**
 * OS locking: without it, concurrent calls from libuv worker threads
 * corrupted SoftHSM2's memory (see ../shared/notes/hsm.md).
 */
export const MODULE_INIT_OPTIONS = { flags: pkcs11.CKF_OS_LOCKING_OK };

export function loadModule(library: string): graphene.Module {
  const existing = loaded.get(library);
  if (existing) {
    existing.users++;
    return existing.mod;
  }
  let mod: graphene.Module;
  try {
    mod = graphene.Module.load(library, "hsm-ca");
  } catch (err) {
    throw new HsmUnavailableError(`cannot load the PKCS#11 module ${library}: ${(err as Error).message}`);
  }
  try {
    mod.initialize(MODULE_INIT_OPTIONS);
  } catch (err) {
    if (!(err instanceof pkcs11.Pkcs11Error && err.code === pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) throw err;
  }
  loaded.set(library, { mod, users: 1 });
  return mod;
}

/** C_Finalize once the last user in this process lets go. */
export function unloadModule(library: string): void {
  const entry = loaded.get(library);
  if (!entry || --entry.users > 0) return;
  loaded.delete(library);
  try {
    entry.mod.finalize();
  } catch {
    // already finalised
  }
}

/** Tokens are found by label: slot ids change when a token is initialised. */
export function findSlotByTokenLabel(mod: graphene.Module, label: string): graphene.Slot | undefined {
  const slots = mod.getSlots(true);
  for (let i = 0; i < slots.length; i++) {
    const slot = slots.items(i);
    const token = slot.getToken();
    if (token.label.trim() === label && token.flags & graphene.TokenFlag.TOKEN_INITIALIZED) return slot;
  }
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
