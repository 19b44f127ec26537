/**
 * Listing and revoking API tokens without SQL: `hsm-ca token list`,
 * `hsm-ca token revoke ID` (over the control socket on PGlite, as its own
 * process on PostgreSQL) and the admin REST endpoints. A revoked token gets
 * 401 within the token cache's time; nothing lists a secret or its hash.
 */
import crypto from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import { TOKEN_CACHE_MS } from "../src/auth/api-tokens.ts";
import { auditEntriesPage } from "../src/store/audit.ts";
import { runCliInProcess } from "./helpers/cli.ts";
import { startTestService, type Backend, type TestService } from "./helpers/service.ts";

const idOf = (token: string) => /^hsmca_([0-9a-f]{12})_/.exec(token)![1]!;

/** Everything a token's listing must never show: the token, its secret part, its SHA-256. */
function secretsOf(token: string): string[] {
  const sha = crypto.createHash("sha256").update(token).digest();
  return [token, token.slice(`hsmca_${idOf(token)}_`.length), sha.toString("hex"), sha.toString("base64"), sha.toString("base64url")];
}

/** Polls with `token` until it is refused; the statuses seen and how long the refusal took. */
async function untilRefused(t: TestService, token: string): Promise<{ status: number; ms: number }> {
  const started = Date.now();
  let status = 200;
  while (status === 200 && Date.now() - started < TOKEN_CACHE_MS + 5_000) {
    status = (await t.api("GET", "/api/v1/cas", { token })).status;
    if (status === 200) await new Promise((r) => setTimeout(r, 200));
  }
  return { status, ms: Date.now() - started };
}

/** One backend a file: a process holds one SoftHSM2 configuration. */
export function tokenAdminSuite(backend: Backend) {
  let t: TestService;
  let admin: string;
  let auditor: string;
  let issuer: string;
  let created: string;

  beforeAll(async () => {
    t = await startTestService(backend);
    [admin, auditor, issuer] = await Promise.all([t.token("admin"), t.token("auditor"), t.token("issuer", "tls-server")]);
    const r = await runCliInProcess(["token", "create", "--role", "issuer", "--profile", "tls-server", "--profile", "tls-client", "--description", "ci runner"], t.env);
    expect(r.code, r.stderr).toBe(0);
    created = r.stdout.trim();
  }, 120_000);
  afterAll(async () => {
    await t?.stop();
  });

  it("hsm-ca token list shows id, role, profiles, description, created and revoked, never a secret", async () => {
    const r = await runCliInProcess(["token", "list"], t.env);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^ID\s+ROLE\s+CREATED\s+REVOKED\s+PROFILES\s+DESCRIPTION$/);
    expect(lines).toHaveLength(5);
    const line = lines.find((l) => l.startsWith(idOf(created)))!;
    expect(line.split(/\s{2,}/)).toEqual([idOf(created), "issuer", expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/), "-", "tls-server,tls-client", "ci runner"]);
    for (const token of [admin, auditor, issuer, created]) {
      expect(r.stdout).toContain(idOf(token));
      for (const secret of secretsOf(token)) expect(r.stdout + r.stderr).not.toContain(secret);
    }
  });

  it("GET /api/v1/tokens lists them for an admin, never a secret; issuer and auditor tokens get 403", async () => {
    const res = await t.api("GET", "/api/v1/tokens", { token: admin });
    expect(res.status, res.text).toBe(200);
    const mine = res.body.items.find((i: { id: string }) => i.id === idOf(created));
    expect(mine).toEqual({ id: idOf(created), role: "issuer", profiles: ["tls-server", "tls-client"], description: "ci runner", createdAt: expect.any(String), revokedAt: null });
    expect(res.body.items.map((i: { id: string }) => i.id).sort()).toEqual([admin, auditor, issuer, created].map(idOf).sort());
    for (const token of [admin, auditor, issuer, created]) for (const secret of secretsOf(token)) expect(res.text).not.toContain(secret);

    for (const token of [auditor, issuer]) {
      const list = await t.api("GET", "/api/v1/tokens", { token });
      expect(list.status).toBe(403);
      expect(list.body.type).toBe("urn:hsm-ca:problem:forbidden");
      const revoke = await t.api("POST", `/api/v1/tokens/${idOf(created)}/revoke`, { token, json: {} });
      expect(revoke.status).toBe(403);
    }
    expect((await t.api("GET", "/api/v1/tokens")).status).toBe(401);
    // Nothing was revoked by those refusals.
    expect((await t.api("GET", "/api/v1/cas", { token: created })).status).toBe(200);
  });

  it("hsm-ca token revoke ID: the token gets 401 within the cache time, the list and the audit log say so", async () => {
    // In use, so cached by the service.
    expect((await t.api("GET", "/api/v1/cas", { token: created })).status).toBe(200);
    const r = await runCliInProcess(["token", "revoke", idOf(created)], t.env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Revoked issuer token ${idOf(created)} \\(profiles tls-server, tls-client\\)`));
    const refused = await untilRefused(t, created);
    expect(refused.status).toBe(401);
    expect(refused.ms).toBeLessThan(TOKEN_CACHE_MS + 2_000);

    const again = await runCliInProcess(["token", "revoke", idOf(created)], t.env);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/already revoked at .*; nothing changed/);
    const listed = (await runCliInProcess(["token", "list"], t.env)).stdout.split("\n").find((l) => l.startsWith(idOf(created)))!;
    expect(listed.split(/\s{2,}/)[3]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    const unknown = await runCliInProcess(["token", "revoke", "0123456789ab"], t.env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr.trim().split("\n")).toEqual(['hsm-ca token: no API token with id "0123456789ab"']);

    await t.service.ctx.audit!.flush();
    const entries = (await auditEntriesPage(t.service.ctx.store.db, { afterSeq: 0, limit: 10_000 })).filter((e) => e.kind === "admin.token.revoke");
    expect(entries.map((e) => [e.actor, e.subject])).toEqual([["cli", idOf(created)]]);
  }, 150_000);

  it("POST /api/v1/tokens/{id}/revoke: an admin revokes; the token gets 401 within the cache time", async () => {
    expect((await t.api("GET", "/api/v1/cas", { token: auditor })).status).toBe(200);
    const res = await t.api("POST", `/api/v1/tokens/${idOf(auditor)}/revoke`, { token: admin });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ id: idOf(auditor), role: "auditor", alreadyRevoked: false, revokedAt: expect.any(String) });
    const refused = await untilRefused(t, auditor);
    expect(refused.status).toBe(401);
    expect(refused.ms).toBeLessThan(TOKEN_CACHE_MS + 2_000);

    const again = await t.api("POST", `/api/v1/tokens/${idOf(auditor)}/revoke`, { token: admin });
    expect(again.body).toMatchObject({ alreadyRevoked: true, revokedAt: res.body.revokedAt });
    const unknown = await t.api("POST", "/api/v1/tokens/0123456789ab/revoke", { token: admin });
    expect(unknown.status).toBe(404);
    expect(unknown.body.type).toBe("urn:hsm-ca:problem:not-found");
    // Other tokens are untouched.
    expect((await t.api("GET", "/api/v1/cas", { token: issuer })).status).toBe(200);

    await t.service.ctx.audit!.flush();
    const entries = (await auditEntriesPage(t.service.ctx.store.db, { afterSeq: 0, limit: 10_000 })).filter((e) => e.kind === "admin.token.revoke" && e.subject === idOf(auditor));
    expect(entries.map((e) => e.actor)).toEqual([`token:${idOf(admin)}`]);
  });
}
