import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "./helpers/cli.ts";
import { createTestDatabase } from "./helpers/postgres.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

/**
 * A CLI run without DATABASE_URL beside a service on PostgreSQL. A file of
 * its own: the service here has its own SoftHSM2 token, and a process can
 * use one SoftHSM2 configuration only (cli.test.ts runs commands in-process
 * on another data directory).
 */
describe("the CLI beside a service on PostgreSQL", () => {
  let t: TestService;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  const password = "never-in-the-data-dir";
  /** The service's environment less DATABASE_URL: an admin's shell that forgot it. */
  let withoutDatabaseUrl: Record<string, string>;

  beforeAll(async () => {
    db = await createTestDatabase();
    const url = new URL(db.url);
    url.password = password;
    t = await startTestService("pglite", { DATABASE_URL: url.toString() });
    const { DATABASE_URL: _, ...rest } = t.env;
    withoutDatabaseUrl = rest;
  }, 120_000);
  afterAll(async () => {
    await t?.stop();
    await db?.drop();
  });

  it("refuses, without DATABASE_URL, to make a token in an embedded database the service does not read: one line saying what to set", async () => {
    const r = await runCli(["token", "create", "--role", "admin"], withoutDatabaseUrl);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    const name = new URL(db.url).pathname.slice(1);
    expect(r.stderr).toMatch(new RegExp(`^hsm-ca token: the service in \\S+ uses PostgreSQL \\(127\\.0\\.0\\.1:5432/${name}\\): set DATABASE_URL to that database`));
    expect(fs.existsSync(path.join(t.config.dataDir, "pglite")), "an embedded database was created").toBe(false);
  });

  it("makes a token the service knows once DATABASE_URL is set", async () => {
    const token = await t.token("admin");
    expect((await t.api("GET", "/api/v1/cas", { token })).status).toBe(200);
  });

  it("learns it from a 0600 file the service wrote, which holds no credentials", () => {
    const file = path.join(t.config.dataDir, "database.json");
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const text = fs.readFileSync(file, "utf8");
    expect(text).not.toContain(password);
    expect(JSON.parse(text)).toEqual({ kind: "postgres", host: "127.0.0.1", port: "5432", database: new URL(db.url).pathname.slice(1) });
  });
});

