import { Hono, type Context } from "hono";
import { AcmeProblem, acmeProblemResponse, toAcmeProblem } from "../acme/problem.ts";
import { HTTPException } from "hono/http-exception";
import { Rejection } from "../errors.ts";
import { HsmKeyError } from "../hsm/errors.ts";
import { isDatabaseUnavailable } from "../store/errors.ts";
import type { AppContext, AppEnv } from "./context.ts";
import { requireJsonBody } from "./json-body.ts";
import { problem, problemStatus, rejectionProblem } from "./problem.ts";
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
import { dashboardRoutes, type DashboardSources } from "./dashboard/routes.tsx";
import type { VaultEnv } from "../vault/context.ts";

/** What both listeners share besides the context. */
export interface ListenerOptions {
  /** HSM_CA_METRICS_TOKEN: /metrics answers only with it; unset: to anyone. */
  metricsToken?: string;
}

/** The HTTPS API: authenticated REST, the ACME server, the dashboard, and the public routes. */
export function createApiApp(
  ctx: AppContext,
  opts: ListenerOptions & { acme?: Hono; revocation?: RevocationPublishing; dashboard?: DashboardSources; vault?: Hono<VaultEnv> } = {},
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
  // The Vault-compatible PKI API (src/vault): its own errors, in Vault's form.
  if (opts.vault) app.route("/v1", opts.vault);
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
    if (isAcmePath(c.req.path)) return acmeProblemResponse(c, new AcmeProblem("malformed", `no ACME resource ${c.req.method} ${c.req.path}`, { status: 404 }));
    return problem(c, "not-found", `no route ${c.req.method} ${c.req.path}`);
  });
  app.onError((err, c) => {
    if (isAcmePath(c.req.path)) return acmeError(ctx, c, err);
    if (err instanceof Rejection) {
      // A refused request is routine; the CA failing to serve one (HSM down or busy, no issuer) is not.
      const level = problemStatus(err.kind) >= 500 ? "error" : "info";
      ctx.log[level]({ route: c.req.path, problem: err.kind, detail: err.detail }, "request refused");
      return rejectionProblem(c, err);
    }
    if (err instanceof HTTPException) return problem(c, "malformed-request", err.message);
    const down = unavailability(err);
    if (down) {
      ctx.log.error({ err: err.message, route: c.req.path }, down.kind === "hsm-unavailable" ? "HSM failure" : "database failure");
      return rejectionProblem(c, down);
    }
    ctx.log.error({ err, route: c.req.path }, "unexpected error");
    return problem(c, "internal", "an unexpected error occurred; it has been logged");
  });
}

function isAcmePath(path: string): boolean {
  return path === "/acme" || path.startsWith("/acme/");
}

function acmeError(ctx: AppContext, c: Context, err: Error): Response {
  if (err instanceof AcmeProblem || err instanceof Rejection) {
    const p = toAcmeProblem(err);
    if (p.status >= 500) ctx.log.error({ err: err.message, route: c.req.path }, "ACME request failed");
    return acmeProblemResponse(c, p);
  }
  ctx.log.error({ err, route: c.req.path }, "ACME request failed");
  return acmeProblemResponse(c, toAcmeProblem(unavailability(err) ?? err));
}

/**
 * An HSM or database failure that reached the door as it was thrown: the CA
 * is unavailable, whichever door asked. Each door answers the Rejection its
 * own way (src/api/problem.ts, src/acme/problem.ts).
 */
function unavailability(err: Error): Rejection | undefined {
  if (err instanceof HsmKeyError || isPkcs11Error(err)) {
    return new Rejection("hsm-unavailable", "the HSM could not complete the operation; try again later", { retryAfterSeconds: 5 });
  }
  if (isDatabaseUnavailable(err)) {
    return new Rejection("database-unavailable", "the database could not complete the operation; try again later", { retryAfterSeconds: 5 });
  }
  return undefined;
}

function isPkcs11Error(err: Error): boolean {
  return err.constructor?.name === "Pkcs11Error" || /^CKR_/.test(err.message);
}
