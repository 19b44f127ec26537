/**
 * Rejects when p has not settled within ms: a check that waits for a dead
 * database must not hang its caller. `what` names the wait in the error.
 */
export function withTimeout<T>(p: Promise<T>, ms: number, what?: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what ? `${what}: ` : ""}no answer in ${ms} ms`)), ms);
    p.then(
      (v) => (clearTimeout(t), resolve(v)),
      (e) => (clearTimeout(t), reject(e)),
    );
  });
}
