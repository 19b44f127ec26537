import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROBLEM_TYPE_PREFIX } from "../src/api/problem.ts";
import { makeCsr } from "./helpers/openssl.ts";
import { BASE_URL } from "./helpers/postgres.ts";
import { startTestService, type TestService } from "./helpers/service.ts";
import { waitFor } from "./helpers/wait.ts";
import postgres from "postgres";

/**
 * /readyz names what is down. The faults are real: the HSM's sessions are
 * closed through PKCS#11 (C_CloseAllSessions), and the PostgreSQL database
 * is dropped from under the service.
 */
let t: TestService;
let token: string;

beforeAll(async () => {
  t = await startTestService("postgres");
  token = await t.token("admin");
});
afterAll(async () => {
  await t?.stop().catch(() => {});
});

describe("readiness", () => {
  it("is ready with the HSM and database up", async () => {
    const res = await t.api("GET", "/readyz");
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toMatch(/^application\/json/);
    expect(res.body).toEqual({ status: "ready", checks: { hsm: "ok", database: "ok" } });
    const live = await t.api("GET", "/healthz");
    expect(live.status).toBe(200);
    expect(live.body).toEqual({ status: "alive" });
  });

  it("reports the HSM down when its sessions are closed, and issuance answers 503 problem+json", async () => {
    const { closeAllSessionsForTest } = await import("./helpers/hsm-faults.ts");
    closeAllSessionsForTest(t.service.hsm);
    const res = await t.api("GET", "/readyz");
    expect(res.status).toBe(503);
    expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(res.body.type).toBe(PROBLEM_TYPE_PREFIX + "hsm-unavailable");
    expect(res.body.status).toBe(503);
    expect(res.body.detail).toMatch(/^hsm down: CKR_SESSION_HANDLE_INVALID/);
    expect(res.body.checks).toEqual({ hsm: expect.stringMatching(/^down: CKR_SESSION_HANDLE_INVALID/), database: "ok" });
    const issued = await t.api("POST", "/api/v1/certificates", {
      token,
      json: { csr: makeCsr({ san: "DNS:x.example.test" }).csr, profile: "tls-server" },
    });
    expect(issued.status).toBe(503);
    expect(issued.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(issued.body.type).toBe(PROBLEM_TYPE_PREFIX + "hsm-unavailable");
    expect(Number(issued.headers["retry-after"])).toBeGreaterThan(0);
    // The HSM comes back by itself (the database test below needs it up).
    await waitFor("/readyz 200 after the HSM's sessions are back", async () => (await t.api("GET", "/readyz")).status === 200);
  });

  it("reports the database down when it goes away", async () => {
    const dbName = new URL(t.env.DATABASE_URL!).pathname.slice(1);
    const admin = postgres(BASE_URL, { max: 1, onnotice: () => {} });
    await admin.unsafe(`drop database ${dbName} with (force)`);
    await admin.end();
    const res = await t.api("GET", "/readyz");
    expect(res.status).toBe(503);
    expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(res.body.type).toBe(PROBLEM_TYPE_PREFIX + "database-unavailable");
    expect(res.body.checks).toEqual({ hsm: "ok", database: expect.stringMatching(/^down: /) });
    expect(res.body.detail).toMatch(/^database down: /);
  });
});
