import { describe, expect, it } from "vitest";
import { RevocationCheck } from "../src/revocation/revocation-check.ts";

/**
 * RevocationCheck stands between a cached "good" OCSP answer and the wire:
 * its answer must come from a query sent after the question was asked.
 * Here the "database" is a list of queries the test answers by hand.
 */
function fakeDatabase() {
  const queries: Array<{ serials: string[]; answer(revoked: string[]): void; fail(err: Error): void }> = [];
  const revokedAmong = (serials: string[]) =>
    new Promise<Set<string>>((resolve, reject) => queries.push({ serials, answer: (r) => resolve(new Set(r)), fail: reject }));
  return { queries, check: new RevocationCheck(revokedAmong) };
}

const tick = () => new Promise((r) => setImmediate(r));

describe("RevocationCheck", () => {
  it("never answers a question with a query sent before it was asked", async () => {
    const { queries, check } = fakeDatabase();
    const first = check.isRevoked("aa");
    expect(queries.map((q) => q.serials)).toEqual([["aa"]]);
    // Asked while the first query is out: the serial is revoked in between; the first query's answer must not be used.
    const second = check.isRevoked("aa");
    const third = check.isRevoked("bb");
    queries[0]!.answer([]);
    expect(await first).toBe(false);
    await tick();
    // One query for everyone who waited, sent only after the first came back.
    expect(queries.map((q) => q.serials)).toEqual([["aa"], ["aa", "bb"]]);
    queries[1]!.answer(["aa"]);
    expect(await second).toBe(true);
    expect(await third).toBe(false);
  });

  it("fails the waiting questions when the query fails, and asks again for the next", async () => {
    const { queries, check } = fakeDatabase();
    const first = check.isRevoked("aa");
    queries[0]!.fail(new Error("database unavailable"));
    await expect(first).rejects.toThrow(/database unavailable/);
    await tick();
    const next = check.isRevoked("aa");
    expect(queries).toHaveLength(2);
    queries[1]!.answer([]);
    expect(await next).toBe(false);
  });
});
