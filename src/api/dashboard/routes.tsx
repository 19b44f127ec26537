import crypto from "node:crypto";
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { principalById, type Principal } from "../../auth/api-tokens.ts";
import { verifySinceLastCheckpoint, type RecentAuditStatus } from "../../audit/verify-since-checkpoint.ts";
import type { AppContext, AppEnv } from "../context.ts";
import { problem } from "../problem.ts";
import { limitTokenRate } from "../../policy/rate-limit.ts";
import { authenticateOrCount } from "../require-role.ts";
import { Rejection } from "../../errors.ts";
import { readOverview, type OverviewSources } from "./overview.ts";
import { LoginPage, OverviewPage, pageHeaders } from "./page.tsx";
import { DashboardSessions, SESSION_TTL_MS } from "./sessions.ts";

/** What the dashboard reads besides the AppContext. */
export interface DashboardSources {
  rotation: OverviewSources["rotation"];
  jobs: OverviewSources["jobs"];
  queueLimit: number;
  /** The audit key's public key as the HSM has it (SPKI DER), to check the last checkpoint against. */
  auditPublicKey(label: string): Promise<Buffer | undefined>;
}

/** Cookie name; the __Host- prefix makes browsers insist on Secure, Path=/ and no Domain. */
const COOKIE = "hsmca-dashboard";
/** The audit chain is checked at most this often, however often the page is loaded. */
const AUDIT_CHECK_EVERY_MS = 30_000;

const mayView = (p: Principal) => p.role === "admin" || p.role === "auditor";

/**
 * /dashboard on the HTTPS listener: a read-only page for admin and
 * auditor tokens. A browser cannot send a bearer token by itself, so the
 * token is typed into a login form once and traded for a short session
 * cookie (src/dashboard/sessions.ts). Failed logins go to the audit log as
 * auth.failure, like refused bearer tokens.
 */
export function dashboardRoutes(ctx: AppContext, sources: DashboardSources) {
  const app = new Hono<AppEnv>();
  const sessions = new DashboardSessions();
  const db = ctx.store.db;
  let audit: { at: number; status: Promise<RecentAuditStatus> } | undefined;
  const auditStatus = () => {
    if (!audit || Date.now() - audit.at > AUDIT_CHECK_EVERY_MS) {
      const status = verifySinceLastCheckpoint(db, { publicKeyOf: sources.auditPublicKey });
      audit = { at: Date.now(), status };
      // A failed check is not remembered: the next load tries again.
      status.catch(() => (audit = undefined));
    }
    return audit.status;
  };

  /** A page with a fresh CSP nonce for its style sheet. */
  const html = (c: Context<AppEnv>, status: 200 | 401 | 403 | 429, render: (nonce: string) => string | Promise<string>) => {
    const nonce = crypto.randomBytes(16).toString("base64");
    return c.html(render(nonce), status, pageHeaders(nonce));
  };

  /** The session's principal, if the cookie is ours, current, and its token still active and allowed. */
  const sessionPrincipal = async (c: Context<AppEnv>): Promise<Principal | undefined> => {
    const session = sessions.check(getCookie(c, COOKIE, "host"));
    if (!session) return undefined;
    const principal = await principalById(db, session.tokenId);
    return principal && mayView(principal) ? principal : undefined;
  };

  app.get("/", async (c) => {
    const principal = await sessionPrincipal(c);
    if (!principal) return c.redirect("/dashboard/login", 303);
    c.set("principal", principal);
    limitTokenRate(ctx, principal.tokenId);
    const overview = await readOverview({
      db,
      hsm: ctx.keyStatus,
      queueLimit: sources.queueLimit,
      rotation: sources.rotation,
      jobs: sources.jobs,
      auditStatus,
      now: () => new Date(),
    });
    return html(c, 200, (nonce) => <OverviewPage nonce={nonce} principal={principal} overview={overview} />);
  });

  app.get("/login", async (c) => {
    if (await sessionPrincipal(c)) return c.redirect("/dashboard", 303);
    return html(c, 200, (nonce) => <LoginPage nonce={nonce} />);
  });

  app.post("/login", sameOrigin, bodyLimit({ maxSize: 4096, onError: (c) => problem(c, "payload-too-large", "send at most 4096 bytes") }), async (c) => {
    const form = await c.req.parseBody().catch(() => ({}) as Record<string, unknown>);
    const token = typeof form.token === "string" ? form.token.trim() : "";
    let principal: Principal | undefined;
    try {
      // Counted per client address like refused bearer tokens (src/api/auth-failures.ts): audited, then 429 beyond the limit.
      principal = await authenticateOrCount(ctx, c, token || undefined, token ? "unknown token" : "no token");
    } catch (err) {
      if (!(err instanceof Rejection) || err.kind !== "rate-limited") throw err;
      c.header("retry-after", String(err.retryAfterSeconds ?? 1));
      return html(c, 429, (nonce) => <LoginPage nonce={nonce} error={`Too many failed logins from this address: try again in ${err.retryAfterSeconds ?? 1} s.`} />);
    }
    if (!principal) {
      ctx.log.warn({ route: "/dashboard/login", reason: token ? "unknown token" : "no token" }, "dashboard login refused");
      return html(c, 401, (nonce) => <LoginPage nonce={nonce} error="That is not a valid API token." />);
    }
    if (!mayView(principal)) {
      const reason = `role ${principal.role} may not view the dashboard`;
      ctx.log.warn({ route: "/dashboard/login", reason }, "dashboard login refused");
      ctx.audit?.record({ kind: "auth.failure", actor: `token:${principal.tokenId}`, result: "error", details: { route: "/dashboard/login", method: "POST", reason } });
      return html(c, 403, (nonce) => <LoginPage nonce={nonce} error={`An ${principal.role} token may not view the dashboard: use an admin or auditor token.`} />);
    }
    c.set("principal", principal);
    setCookie(c, COOKIE, sessions.start(principal.tokenId), {
      prefix: "host",
      httpOnly: true,
      secure: true,
      sameSite: "Strict",
      maxAge: SESSION_TTL_MS / 1000,
    });
    ctx.audit?.record({ kind: "dashboard.login", actor: `token:${principal.tokenId}`, details: { role: principal.role } });
    ctx.log.info({ tokenId: principal.tokenId, role: principal.role }, "dashboard login");
    return c.redirect("/dashboard", 303);
  });

  app.post("/logout", sameOrigin, async (c) => {
    sessions.end(getCookie(c, COOKIE, "host"));
    deleteCookie(c, COOKIE, { prefix: "host", httpOnly: true, secure: true, sameSite: "Strict" });
    return c.redirect("/dashboard/login", 303);
  });

  return app;
}

/**
 * Forms post only from our own pages. A browser says where a request comes
 * from (Sec-Fetch-Site, Origin); a request that says another site is
 * refused. The session cookie is SameSite=Strict besides.
 */
async function sameOrigin(c: Context<AppEnv>, next: () => Promise<void>) {
  const site = c.req.header("sec-fetch-site");
  const origin = c.req.header("origin");
  const crossSite = site !== undefined ? site !== "same-origin" && site !== "none" : origin !== undefined && origin !== new URL(c.req.url).origin;
  if (crossSite) return problem(c, "forbidden", "dashboard forms are accepted from the dashboard's own pages only");
  await next();
}
