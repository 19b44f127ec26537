import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROBLEM_TYPE_PREFIX } from "../src/api/problem.ts";
import { makeCsr } from "./helpers/openssl.ts";
import { BASE_URL } from "./helpers/postgres.ts";
import { startTestService, type TestService } from "./helpers/service.ts";
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
  });

  it("reports the HSM down when its sessions are closed, and issuance answers 503 problem+json", async () => {
    const { closeAllSessionsForTest } = await import("./helpers/hsm-faults.ts");
    closeAllSessionsForTest(t.service.hsm);
    const res = await t.api("GET", "/readyz");
    expect(res.status).toBe(503);
    expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(res.body.type).toBe(PROBLEM_TYPE_PREFIX + "hsm-unavailable");
    expect(res.body.detail).toMatch(/^hsm down: CKR_SESSION_HANDLE_INVALID/);
    expect(res.body.checks.database).toBe("ok");
    const issued = await t.api("POST", "/api/v1/certificates", {
      token,
      json: { csr: makeCsr({ san: "DNS:x.example.test" }).csr, profile: "tls-server" },
    });
    expect(issued.status).toBe(503);
    expect(issued.body.type).toBe(PROBLEM_TYPE_PREFIX + "hsm-unavailable");
    expect(issued.headers["retry-after"]).toBeDefined();
  });

  it("reports the database down when it goes away", async () => {
    const dbName = new URL(t.env.DATABASE_URL!).pathname.slice(1);
    const admin = postgres(BASE_URL, { max: 1, onnotice: () => {} });
    await admin.unsafe(`drop database ${dbName} with (force)`);
    await admin.end();
    const res = await t.api("GET", "/readyz");
    expect(res.status).toBe(503);
    expect(res.body.checks.database).toMatch(/^down: /);
    expect(res.body.detail).toMatch(/database down/);
  });
});
