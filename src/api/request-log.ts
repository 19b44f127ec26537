import crypto from "node:crypto";
import type { Context, MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import { withLogFields } from "../logger.ts";
import type { AppContext, AppEnv } from "./context.ts";

export type Listener = "https" | "http";

/** An incoming X-Request-Id is kept when it looks like an id (a UUID, a trace id), not like a payload. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Probes and scrapes arrive every few seconds and say nothing new: logged at debug. */
const QUIET_ROUTES = new Set(["/healthz", "/readyz", "/metrics"]);

const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

/** The route label of a request that matched no route: never its raw path. */
export const UNMATCHED_ROUTE = "unmatched";

/**
 * The first middleware of each app: gives every request an id (a sane
 * incoming X-Request-Id, else a new UUID), echoes it in the response's
 * X-Request-Id, adds it as reqId to every log line written while the
 * request runs, then writes one line for the request and counts it in
 * hsmca_http_requests_total and hsmca_http_request_duration_seconds.
 *
 * The line has the route pattern (/api/v1/certificates/:serial), never the
 * raw path (serials, an OCSP request in base64), and the principal's id
 * (tokenId, or acmeAccount), never a secret. Level: info, warn for 5xx (the
 * error itself is logged at error by the error handler), debug for
 * /healthz, /readyz and /metrics.
 */
export function requestLog(ctx: Pick<AppContext, "log" | "metrics">, listener: Listener): MiddlewareHandler<AppEnv> {
  const observe: MiddlewareHandler<AppEnv> = async function observeRequest(c, next) {
    const reqId = requestIdOf(c.req.header("x-request-id"));
    c.set("requestId", reqId);
    const started = performance.now();
    let failed = false;
    try {
      await withLogFields({ reqId }, () => next());
    } catch (err) {
      // Only what the error handler could not turn into a response gets here.
      failed = true;
      throw err;
    } finally {
      const seconds = (performance.now() - started) / 1000;
      const status = failed ? 500 : c.res.status;
      if (!failed) echoRequestId(c, reqId);
      const route = routeOf(c, observe);
      const principal = c.get("principal");
      const acmeAccount = c.get("acmeAccount");
      recordRequest(ctx, {
        reqId,
        listener,
        method: c.req.method,
        route,
        status,
        seconds,
        ...(principal ? { tokenId: principal.tokenId, role: principal.role } : {}),
        ...(acmeAccount ? { acmeAccount } : {}),
      });
    }
  };
  return observe;
}

export interface RequestRecord {
  reqId: string;
  listener: Listener;
  method: string;
  /** The route pattern, never the raw path. */
  route: string;
  status: number;
  seconds: number;
  tokenId?: string;
  role?: string;
  acmeAccount?: string;
}

/** The request's log line and HTTP metrics; also used by the OCSP fast path on the plain-HTTP listener. */
export function recordRequest(ctx: Pick<AppContext, "log" | "metrics">, r: RequestRecord): void {
  const method = METHODS.has(r.method) ? r.method : "OTHER";
  ctx.metrics?.httpRequests.inc({ listener: r.listener, method, route: r.route, status: String(r.status) });
  ctx.metrics?.httpRequestSeconds.observe({ listener: r.listener, method, route: r.route }, r.seconds);
  const level = QUIET_ROUTES.has(r.route) ? "debug" : r.status >= 500 ? "warn" : "info";
  const { seconds, ...fields } = r;
  ctx.log[level]({ ...fields, method, ms: Math.round(seconds * 1e6) / 1e3 }, "request");
}

/** A sane incoming X-Request-Id, else a new one. */
export function requestIdOf(incoming: string | undefined): string {
  return incoming && SANE_REQUEST_ID.test(incoming) ? incoming : crypto.randomUUID();
}

/** Sets X-Request-Id on the response; a response with immutable headers is copied first. */
function echoRequestId(c: Context, reqId: string): void {
  try {
    c.res.headers.set("x-request-id", reqId);
  } catch {
    c.res = new Response(c.res.body, c.res);
    c.res.headers.set("x-request-id", reqId);
  }
}

/** The pattern of the route that answered (the last handler that ran), or "unmatched". */
function routeOf(c: Context, observer: MiddlewareHandler): string {
  const route = matchedRoutes(c)[c.req.routeIndex];
  if (!route || route.handler === observer) return UNMATCHED_ROUTE;
  return route.path;
}
