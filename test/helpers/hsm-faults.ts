import fs from "node:fs";
import path from "node:path";
import type { Hsm } from "../../src/hsm/hsm.ts";

/**
 * Closes every PKCS#11 session the process has on the token, as an HSM
 * does when it restarts or an operator kills sessions. Reaches into the
 * pool on purpose: there is no public API to break the HSM.
 */
export function closeAllSessionsForTest(hsm: Hsm): void {
  const session = (hsm as unknown as { connection: { pool: { lookup: { lib: any; slot: { handle: Buffer } } } } }).connection.pool.lookup;
  session.lib.C_CloseAllSessions(session.slot.handle);
}

/**
 * "Pulls out" the embedded SoftHSM2 token: moves its directory
 * (data/hsm/tokens/<uuid>) out of the token directory. Returns the way to
 * put it back.
 */
export function removeEmbeddedTokenForTest(dataDir: string): { reinsert(): void } {
  const tokens = path.join(dataDir, "hsm", "tokens");
  const dirs = fs.readdirSync(tokens);
  if (dirs.length !== 1) throw new Error(`expected one token directory in ${tokens}, found ${dirs.length}`);
  const from = path.join(tokens, dirs[0]!);
  const away = path.join(dataDir, "hsm", `removed-${dirs[0]}`);
  fs.renameSync(from, away);
  return { reinsert: () => fs.renameSync(away, from) };
}
