import { withTimeout } from "../with-timeout.ts";

/** What sys/health reports as sealed or not: the HSM and the database usable, and the service not stopping (as /readyz). */
export async function vaultReadiness(deps: {
  hsm: { health(): { ok: true } | { ok: false; detail: string } };
  ping(): Promise<unknown>;
  stopping(): boolean;
}): Promise<{ ok: boolean; detail: string }> {
  if (deps.stopping()) return { ok: false, detail: "the service is shutting down" };
  const hsm = deps.hsm.health();
  if (!hsm.ok) return { ok: false, detail: `hsm down: ${hsm.detail}` };
  try {
    await withTimeout(deps.ping(), 2_000, "database ping");
  } catch (err) {
    return { ok: false, detail: `database down: ${(err as Error).message}` };
  }
  return { ok: true, detail: "ready" };
}
