import { Hono, type Context } from "hono";
import { AcmeProblem } from "../acme/problem.ts";
import { toAcmeProblem } from "../acme/router.ts";
import { HTTPException } from "hono/http-exception";
import { REJECTIONS, Rejection } from "../errors.ts";
import { HsmKeyError } from "../hsm/errors.ts";
import { isDatabaseUnavailable } from "../store/errors.ts";
import type { AppContext, AppEnv } from "./context.ts";
import { requireJsonBody } from "./json-body.ts";
import { problem } from "./problem.ts";
import { caRoutes } from "./routes/cas.ts";
import { certificateRoutes } from "./routes/certificates.ts";
import { requestRoutes } from "./routes/requests.ts";
import { tokenRoutes } from "./routes/tokens.ts";
import { crlRoutes } from "./routes/crl.ts";
import { ocspRoutes } from "./routes/ocsp.ts";
import type { RevocationPublishing } from "../revocation/pointers.ts";
import { healthRoutes } from "./routes/health.ts";
import { publicCaRoutes } from "./routes/public-ca.ts";
import { metricsRoutes } from "./routes/metrics.ts";
import { requestLog } from "./request-log.ts";
import { dashboardRoutes, type DashboardSources } from "../dashboard/routes.tsx";

/** What both listeners share besides the context. */
export interface ListenerOptions {
  /** HSM_CA_METRICS_TOKEN: /metrics answers only with it; unset: to anyone. */
  metricsToken?: string;
}

/** The HTTPS API: authenticated REST, the ACME server, the dashboard, and the public routes. */
export function createApiApp(
  ctx: AppContext,
  opts: ListenerOptions & { acme?: Hono; revocation?: RevocationPublishing; dashboard?: DashboardSources } = {},
): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.use("*", requestLog(ctx, "https"));
  const acme = opts.acme;
  app.use("/api/v1/*", requireJsonBody);
  app.route("/api/v1/certificates", certificateRoutes(ctx, opts.revocation));
  app.route("/api/v1/cas", caRoutes(ctx));
  app.route("/api/v1/requests", requestRoutes(ctx, opts.revocation));
  app.route("/api/v1/tokens", tokenRoutes(ctx));
  if (opts.dashboard) app.route("/dashboard", dashboardRoutes(ctx, opts.dashboard));
  if (acme) app.route("/", acme);
  mountPublic(app, ctx, opts);
  return app;
}

/** The plain-HTTP listener: CA material, CRLs, OCSP, health and metrics. */
export function createPublicApp(ctx: AppContext, opts: ListenerOptions = {}): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.use("*", requestLog(ctx, "http"));
  mountPublic(app, ctx, opts);
  return app;
}

function mountPublic(app: Hono<AppEnv>, ctx: AppContext, opts: ListenerOptions): void {
  if (ctx.metrics) app.route("/", metricsRoutes(ctx.metrics, opts.metricsToken));
  app.route("/ca", publicCaRoutes(ctx));
  app.route("/crl", crlRoutes(ctx.store.db, () => new Date()));
  app.route("/ocsp", ocspRoutes(ctx.ocsp, () => new Date()));
  app.route("/", healthRoutes(ctx));
  app.notFound((c) => {
    if (isAcmePath(c.req.path)) return acmeProblem(c, new AcmeProblem("malformed", `no ACME resource ${c.req.method} ${c.req.path}`, { status: 404 }));
    return problem(c, "not-found", `no route ${c.req.method} ${c.req.path}`);
  });
  app.onError((err, c) => {
    if (isAcmePath(c.req.path)) return acmeError(ctx, c, err);
    if (err instanceof Rejection) {
      // A refused request is routine; the CA failing to serve one (HSM down or busy, no issuer) is not.
      const level = REJECTIONS[err.kind].status >= 500 ? "error" : "info";
      ctx.log[level]({ route: c.req.path, problem: err.kind, detail: err.detail }, "request refused");
      if (err.retryAfterSeconds !== undefined) c.header("retry-after", String(err.retryAfterSeconds));
      return problem(c, err.kind, err.detail);
    }
    if (err instanceof HTTPException) return problem(c, "malformed-request", err.message);
    if (err instanceof HsmKeyError || isPkcs11Error(err)) {
      ctx.log.error({ err: err.message, route: c.req.path }, "HSM failure");
      c.header("retry-after", "5");
      return problem(c, "hsm-unavailable", "the HSM could not complete the operation; try again later");
    }
    if (isDatabaseUnavailable(err)) {
      ctx.log.error({ err: err.message, route: c.req.path }, "database failure");
      c.header("retry-after", "5");
      return problem(c, "database-unavailable", "the database could not complete the operation; try again later");
    }
    ctx.log.error({ err, route: c.req.path }, "unexpected error");
    return problem(c, "internal", "an unexpected error occurred; it has been logged");
  });
}

function isAcmePath(path: string): boolean {
  return path === "/acme" || path.startsWith("/acme/");
}

function acmeError(ctx: AppContext, c: Context, err: Error): Response {
  let p = toAcmeProblem(err);
  if (!(err instanceof AcmeProblem) && !(err instanceof Rejection)) {
    if (err instanceof HsmKeyError || isPkcs11Error(err)) {
      p = new AcmeProblem("serverInternal", "the HSM could not complete the operation; try again later", { status: 503, retryAfterSeconds: 5 });
    } else if (isDatabaseUnavailable(err)) {
      p = new AcmeProblem("serverInternal", "the database could not complete the operation; try again later", { status: 503, retryAfterSeconds: 5 });
    }
    ctx.log.error({ err, route: c.req.path }, "ACME request failed");
  } else if (p.status >= 500) {
    ctx.log.error({ err: err.message, route: c.req.path }, "ACME request failed");
  }
  return acmeProblem(c, p);
}

function acmeProblem(c: Context, p: AcmeProblem): Response {
  if (p.extra.retryAfterSeconds !== undefined) c.header("retry-after", String(p.extra.retryAfterSeconds));
  return c.body(JSON.stringify(p.toDocument()), p.status as 400, { "content-type": "application/problem+json" });
}

function isPkcs11Error(err: Error): boolean {
  return err.constructor?.name === "Pkcs11Error" || /^CKR_/.test(err.message);
}
