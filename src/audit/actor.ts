import { AsyncLocalStorage } from "node:async_hooks";

/**
 * Who is acting, carried along the async call chain: "token:<id>",
 * "acme:<account>", "cli" or "system:<job>". Code deep down (an HSM key-use
 * event, say) learns its caller here without every function passing it on.
 */
const current = new AsyncLocalStorage<string>();

/** Runs fn, and everything it starts (awaits, timers, callbacks), as actor. */
export function withActor<T>(actor: string, fn: () => T): T {
  return current.run(actor, fn);
}

/** The actor of the code running now; undefined outside any withActor. */
export function currentActor(): string | undefined {
  return current.getStore();
}

/**
 * The actor for a "requested by" / "revoked by" value as the stores keep
 * it (a bare API token id, "acme:<account>", "cli"); without one, whoever
 * is acting now, else "system".
 */
export function actorFor(by: string | null | undefined): string {
  if (!by) return currentActor() ?? "system";
  return by === "cli" || by.includes(":") ? by : `token:${by}`;
}
