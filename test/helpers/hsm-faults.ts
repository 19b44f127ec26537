import type { Hsm } from "../../src/hsm/hsm.ts";

/**
 * Closes every PKCS#11 session the process has on the token, as an HSM
 * does when it restarts or an operator kills sessions. Reaches into the
 * pool on purpose: there is no public API to break the HSM.
 */
export function closeAllSessionsForTest(hsm: Hsm): void {
  const session = (hsm as unknown as { pool: { lookup: { lib: any; slot: { handle: Buffer } } } }).pool.lookup;
  session.lib.C_CloseAllSessions(session.slot.handle);
}
