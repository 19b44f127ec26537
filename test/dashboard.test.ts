import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { auditEntriesPage } from "../src/store/audit.ts";
import { launchChromium } from "./helpers/browser.ts";
import { REPO } from "./helpers/cli.ts";
import { makeCsr } from "./helpers/openssl.ts";
import { startTestService, type TestService } from "./helpers/service.ts";
import { waitFor } from "./helpers/wait.ts";

/**
 * The dashboard in a real browser (Debian's Chromium, headless): an
 * auditor signs in with a token, sees the CA hierarchy, the certificates
 * just issued and revoked, and the HSM's health; an issuer token is turned
 * away; the session cookie never holds the token. A screenshot is kept
 * under test-results/ for a person to look at.
 */
const SCREENSHOT = path.join(REPO, "test-results", "dashboard.png");
const COOKIE = "__Host-hsmca-dashboard";

let t: TestService;
let browser: Browser;
let auditor: string;
let issuer: string;
const serials: string[] = [];
let revokedSerial: string;

beforeAll(async () => {
  t = await startTestService("postgres");
  [auditor, issuer] = await Promise.all([t.token("auditor"), t.token("issuer", "tls-server")]);
  for (const name of ["a", "b", "c"]) {
    const res = await t.api("POST", "/api/v1/certificates", { token: issuer, json: { csr: makeCsr({ san: `DNS:${name}.dash.example.test` }).csr, profile: "tls-server" } });
    expect(res.status).toBe(201);
    serials.push(res.body.serial);
  }
  revokedSerial = serials[1]!;
  expect((await t.api("POST", `/api/v1/certificates/${revokedSerial}/revoke`, { token: issuer, json: { reason: "superseded" } })).status).toBe(200);
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await t?.stop();
});

async function newPage(): Promise<{ context: BrowserContext; page: Page }> {
  // The service's certificate chains to the test's own root, which Chromium does not know.
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 } });
  return { context, page: await context.newPage() };
}

async function signIn(page: Page, token: string) {
  await page.goto(`${t.service.httpsUrl}/dashboard`);
  expect(new URL(page.url()).pathname).toBe("/dashboard/login");
  await page.fill("#token", token);
  await Promise.all([page.waitForLoadState("load"), page.click("button[type=submit]")]);
}

describe("dashboard", () => {
  it("sends a browser without a session to the login page", async () => {
    const direct = await t.api("GET", "/dashboard");
    expect(direct.status).toBe(303);
    expect(direct.headers.location).toBe("/dashboard/login");
    const forged = await t.api("GET", "/dashboard", { headers: { cookie: `${COOKIE}=eyJ0b2tlbklkIjoiYWJjIn0.AAAA` } });
    expect(forged.status).toBe(303);
  });

  it("shows an auditor the hierarchy, recent issuance and revocations, and the HSM's health", async () => {
    // The every-second revocation watch may not have run yet right after start: the page shows its last run.
    await waitFor("a first revocation-watch run", async () => (await t.service.jobs.status()).jobs.find((j) => j.name === "revocation-watch")?.lastRun);
    const { context, page } = await newPage();
    await signIn(page, auditor);
    expect(new URL(page.url()).pathname).toBe("/dashboard");

    const hierarchy = await page.textContent("#hierarchy");
    expect(hierarchy).toContain("CN=hsm-ca Root CA");
    expect(hierarchy).toContain("CN=hsm-ca Issuing CA 1");
    expect(await page.locator("#hierarchy .ca.root .bar").count()).toBe(1);
    expect(await page.locator("#hierarchy .ca.intermediate .bar.active").count()).toBe(1);

    const issued = await page.textContent("#issued");
    for (const serial of serials) expect(issued).toContain(serial);
    expect(await page.locator(`#issued tr[data-serial="${revokedSerial}"]`).textContent()).toContain("revoked");
    const revoked = await page.textContent("#revoked");
    expect(revoked).toContain(revokedSerial);
    expect(revoked).toContain("superseded");
    for (const serial of serials.filter((s) => s !== revokedSerial)) expect(revoked).not.toContain(serial);

    const hsm = await page.textContent("#hsm");
    expect(hsm).toMatch(/Health\s*ok/);
    expect(hsm).toContain("sensitive=true");
    expect(hsm).toContain("extractable=false");
    expect(hsm).toContain("neverExtractable=true");
    expect(await page.locator("#hsm .bad").count()).toBe(0);
    expect(await page.textContent("#rotation")).toMatch(/when less than 33% of its life remains: due/);
    expect(await page.textContent("#audit")).toContain("intact");
    expect(await page.textContent("#approvals")).toContain("Nothing waits for approval");
    // One replica: it leads, and has published the first CRLs and polled for revocations.
    const jobs = await page.textContent("#jobs");
    expect(jobs).toMatch(/This replica\s*\S+:\d+\s*leader/);
    expect(await page.locator("#jobs [data-leader]").count()).toBe(1);
    expect(await page.textContent('#jobs tr[data-job="crl-publishing"]')).toMatch(/the leader.*UTC.*ok/);
    expect(await page.textContent('#jobs tr[data-job="revocation-watch"]')).toMatch(/every replica.*UTC.*ok/);
    expect(await page.locator("#jobs .badge.bad").count()).toBe(0);
    expect(await page.locator("script").count()).toBe(0);

    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    console.log(`dashboard screenshot: ${SCREENSHOT}`);

    // The session cookie: HttpOnly, Secure, SameSite=Strict, short-lived, and nothing of the token in it.
    const cookie = (await context.cookies()).find((c) => c.name === COOKIE)!;
    expect(cookie).toMatchObject({ httpOnly: true, secure: true, sameSite: "Strict", path: "/" });
    expect(cookie.expires * 1000 - Date.now()).toBeLessThanOrEqual(30 * 60_000 + 5_000);
    const secret = auditor.slice("hsmca_".length + 13); // after "hsmca_<12-hex id>_" (base64url may hold "_" itself)
    const sha256 = crypto.createHash("sha256").update(auditor).digest();
    const decoded = Buffer.from(cookie.value.split(".")[0]!, "base64url").toString("utf8");
    for (const form of [cookie.value, decoded]) {
      expect(form).not.toContain(auditor);
      expect(form).not.toContain(secret);
      expect(form).not.toContain(sha256.toString("hex"));
      expect(form).not.toContain(sha256.toString("base64url"));
    }

    // Logging out ends the session: the same cookie, replayed, gets the login page.
    await Promise.all([page.waitForLoadState("load"), page.click("header button[type=submit]")]);
    expect(new URL(page.url()).pathname).toBe("/dashboard/login");
    const replayed = await t.api("GET", "/dashboard", { headers: { cookie: `${COOKIE}=${cookie.value}` } });
    expect(replayed.status).toBe(303);
    await context.close();
  });

  it("turns an issuer token away at login, sets no cookie, and records the failure in the audit log", async () => {
    const { context, page } = await newPage();
    await signIn(page, issuer);
    expect(new URL(page.url()).pathname).toBe("/dashboard/login");
    expect(await page.textContent("[role=alert]")).toContain("An issuer token may not view the dashboard");
    expect(await context.cookies()).toEqual([]);
    await page.goto(`${t.service.httpsUrl}/dashboard`);
    expect(new URL(page.url()).pathname).toBe("/dashboard/login");

    await signIn(page, "hsmca_0123456789ab_" + "x".repeat(32));
    expect(await page.textContent("[role=alert]")).toContain("not a valid API token");
    await context.close();

    await t.service.ctx.audit!.flush();
    const failures = (await auditEntriesPage(t.service.ctx.store.db, { afterSeq: 0, limit: 10_000 })).filter(
      (e) => e.kind === "auth.failure" && e.details.route === "/dashboard/login",
    );
    const issuerId = /^hsmca_([0-9a-f]{12})_/.exec(issuer)![1];
    expect(failures.map((e) => [e.actor, e.details.reason])).toEqual([
      [`token:${issuerId}`, "role issuer may not view the dashboard"],
      ["anonymous", "unknown token"],
    ]);
    expect(failures[1]!.details.claimed_token).toBe("0123456789ab");
    // The secret is all that follows "hsmca_<id>_" (base64url may hold "_" itself).
    expect(JSON.stringify(failures)).not.toContain(issuer.slice(`hsmca_${issuerId}_`.length));
  });

  it("refuses a login form posted from another site", async () => {
    const res = await t.api("POST", "/dashboard/login", {
      raw: `token=${encodeURIComponent(auditor)}`,
      headers: { "content-type": "application/x-www-form-urlencoded", origin: "https://evil.example", "sec-fetch-site": "cross-site" },
    });
    expect(res.status).toBe(403);
    expect(res.headers["set-cookie"]).toBeUndefined();
  });
});
