import crypto from "node:crypto";
import type { Context } from "hono";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { ocspErrorResponse } from "../../ca/ocsp.ts";
import type { OcspAnswer, OcspService } from "../../revocation/ocsp-service.ts";

/** Requests are a few hundred bytes; anything much larger is not OCSP. */
const MAX_REQUEST_BYTES = 8 * 1024;

/**
 * OCSP over HTTP (RFC 6960 Appendix A, RFC 5019 §5-6): POST with the DER
 * request, or GET with it base64 (then URL-encoded) in the path. Errors are
 * OCSP error responses, never HTTP 500.
 */
export function ocspRoutes(ocsp: () => OcspService | undefined, now: () => Date) {
  const app = new Hono();
  const answer = async (c: Context, der: Uint8Array | undefined) => {
    const service = ocsp();
    const result: OcspAnswer = !service
      ? { der: ocspErrorResponse("tryLater") }
      : der === undefined
        ? { der: ocspErrorResponse("malformedRequest") }
        : await service.respond(der);
    const headers: Record<string, string> = { "content-type": "application/ocsp-response" };
    if (result.validity) {
      const maxAge = Math.max(0, Math.floor((result.validity.nextUpdate.getTime() - now().getTime()) / 1000));
      headers["cache-control"] = `public, max-age=${maxAge}, no-transform, must-revalidate`;
      headers["last-modified"] = result.validity.thisUpdate.toUTCString();
      headers["expires"] = result.validity.nextUpdate.toUTCString();
      headers["etag"] = `"${crypto.createHash("sha1").update(result.der).digest("hex")}"`;
    } else {
      headers["cache-control"] = "no-store";
    }
    return c.body(new Uint8Array(result.der), 200, headers);
  };
  app.post(
    "/",
    bodyLimit({ maxSize: MAX_REQUEST_BYTES, onError: (c) => (c.header("connection", "close"), answer(c, undefined)) }),
    async (c) => answer(c, new Uint8Array(await c.req.arrayBuffer())),
  );
  app.get("/*", async (c) => {
    const encoded = c.req.path.replace(/^.*?\/ocsp\/?/, "");
    let der: Uint8Array | undefined;
    try {
      const b64 = decodeURIComponent(encoded);
      if (b64.length > 0 && b64.length <= MAX_REQUEST_BYTES * 2 && /^[A-Za-z0-9+/=_-]+$/.test(b64)) der = Buffer.from(b64, "base64");
    } catch {
      der = undefined;
    }
    return answer(c, der);
  });
  return app;
}
