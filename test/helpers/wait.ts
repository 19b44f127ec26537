/**
 * Waits for a condition instead of sleeping for a guessed time: polls
 * `check` until it returns something truthy (which is returned), and fails
 * with `what` and the last value or error seen once `timeoutMs` has passed.
 * A check that throws counts as "not yet".
 */
export async function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  { timeoutMs = 10_000, intervalMs = 50 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<NonNullable<T>> {
  const started = Date.now();
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
      last = value;
    } catch (err) {
      last = err;
    }
    if (Date.now() - started >= timeoutMs) {
      const seen = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`${what}: not within ${timeoutMs} ms (last seen: ${seen})`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
