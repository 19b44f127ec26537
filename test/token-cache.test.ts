import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TOKEN_CACHE_MS } from "../src/auth/api-tokens.ts";
import { apiTokens } from "../src/store/schema.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

// Valid API tokens are believed for TOKEN_CACHE_MS without a database query
// (docs/design.md, "Performance": a token revoked in the database stops working within that time).

let t: TestService;
beforeAll(async () => {
  t = await startTestService("postgres");
}, 120_000);
afterAll(async () => {
  await t?.stop();
});

describe("API token cache", () => {
  it("works at once for a new token, and refuses a revoked one within the cache time", async () => {
    const token = await t.token("auditor");
    expect((await t.api("GET", "/api/v1/certificates", { token })).status).toBe(200);
    const id = /^hsmca_([0-9a-f]{12})_/.exec(token)![1]!;
    await t.service.ctx.store.db.update(apiTokens).set({ revokedAt: new Date() }).where(eq(apiTokens.id, id));
    const revokedAt = Date.now();
    let status = 200;
    while (status === 200 && Date.now() - revokedAt < TOKEN_CACHE_MS + 3000) {
      status = (await t.api("GET", "/api/v1/certificates", { token })).status;
      if (status === 200) await new Promise((r) => setTimeout(r, 250));
    }
    expect(status).toBe(401);
    expect(Date.now() - revokedAt).toBeLessThan(TOKEN_CACHE_MS + 1500);
  }, 30_000);

  it("never caches an unknown token", async () => {
    const bogus = "hsmca_0123456789ab_" + "x".repeat(32);
    expect((await t.api("GET", "/api/v1/certificates", { token: bogus })).status).toBe(401);
    expect((await t.api("GET", "/api/v1/certificates", { token: bogus })).status).toBe(401);
  });
});
