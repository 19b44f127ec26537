import { createMiddleware } from "hono/factory";
import type { AppEnv } from "./context.ts";
import { problem } from "./problem.ts";

/** application/json, or any application/<something>+json, with or without parameters (charset). */
const JSON_MEDIA_TYPE = /^application\/(?:[a-z0-9.!#$&^_-]+\+)?json\s*(?:;|$)/i;

const WITH_BODY = new Set(["POST", "PUT", "PATCH"]);

/**
 * For the JSON endpoints (/api/v1/*): a POST, PUT or PATCH that carries a
 * body in another media type (text/plain, a form, or none named) is
 * answered 415 unsupported-media-type before anything else, so that a body
 * is never read as something it was not sent as. A request without a body
 * (approve, revoke a token) needs no Content-Type. ACME (application/jose+json,
 * RFC 8555 §6.2) and OCSP (application/ocsp-request) check their own.
 */
export const requireJsonBody = createMiddleware<AppEnv>(async (c, next) => {
  if (WITH_BODY.has(c.req.method) && hasBody(c.req.raw.headers)) {
    const type = c.req.header("content-type") ?? "";
    if (!JSON_MEDIA_TYPE.test(type)) {
      const named = type.split(";")[0]!.trim().slice(0, 100);
      return problem(c, "unsupported-media-type", `send the body as application/json, not ${named ? `"${named}"` : "without a Content-Type"}`);
    }
  }
  await next();
});

function hasBody(headers: Headers): boolean {
  return headers.has("transfer-encoding") || Number(headers.get("content-length") ?? 0) > 0;
}
