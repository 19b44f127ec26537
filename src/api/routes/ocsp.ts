import type { Context } from "hono";
import { Hono } from "hono";
import { ocspErrorResponse } from "../../ca/ocsp-response.ts";
import type { OcspAnswer, OcspService } from "../../revocation/ocsp-service.ts";

/** Requests are a few hundred bytes; anything much larger is not OCSP. */
export const MAX_OCSP_REQUEST_BYTES = 8 * 1024;
const MAX_REQUEST_BYTES = MAX_OCSP_REQUEST_BYTES;

/** The answer to one DER request (undefined: unreadable), with RFC 5019 caching headers. */
export async function ocspHttpAnswer(
  service: OcspService | undefined,
  der: Uint8Array | undefined,
  now: Date,
): Promise<{ body: Uint8Array; headers: Record<string, string> }> {
  const result: OcspAnswer = !service
    ? { der: ocspErrorResponse("tryLater") }
    : der === undefined
      ? { der: ocspErrorResponse("malformedRequest") }
      : await service.respond(der);
  const headers: Record<string, string> = { "content-type": "application/ocsp-response" };
  if (result.validity) {
    const maxAge = Math.max(0, Math.floor((result.validity.nextUpdate.getTime() - now.getTime()) / 1000));
    headers["cache-control"] = `public, max-age=${maxAge}, no-transform, must-revalidate`;
    headers["last-modified"] = result.validity.thisUpdate.toUTCString();
    headers["expires"] = result.validity.nextUpdate.toUTCString();
    headers["etag"] = result.validity.etag;
  } else {
    headers["cache-control"] = "no-store";
  }
  return { body: result.der, headers };
}

/** The DER request in a GET path (base64, then URL-encoded, after /ocsp/); undefined when unreadable. */
export function ocspRequestFromPath(path: string): Uint8Array | undefined {
  const encoded = path.replace(/^.*?\/ocsp\/?/, "");
  try {
    const b64 = decodeURIComponent(encoded);
    if (b64.length > 0 && b64.length <= MAX_REQUEST_BYTES * 2 && /^[A-Za-z0-9+/=_-]+$/.test(b64)) return Buffer.from(b64, "base64");
  } catch {
    // not percent-encoding
  }
  return undefined;
}

/**
 * OCSP over HTTP (RFC 6960 Appendix A, RFC 5019 §5-6): POST with the DER
 * request, or GET with it base64 (then URL-encoded) in the path. Errors are
 * OCSP error responses, never HTTP 500.
 */
export function ocspRoutes(ocsp: () => OcspService | undefined, now: () => Date) {
  const app = new Hono();
  const answer = async (c: Context, der: Uint8Array | undefined) => {
    const { body, headers } = await ocspHttpAnswer(ocsp(), der, now());
    return c.body(new Uint8Array(body), 200, headers);
  };
  // The size check by hand: Hono's bodyLimit middleware cost two thirds of POST throughput here.
  app.post("/", async (c) => {
    if (Number(c.req.header("content-length") ?? 0) > MAX_REQUEST_BYTES) {
      c.header("connection", "close");
      return answer(c, undefined);
    }
    const body = await readAtMost(c.req.raw, MAX_REQUEST_BYTES);
    if (!body) c.header("connection", "close");
    return answer(c, body);
  });
  app.get("/*", (c) => answer(c, ocspRequestFromPath(c.req.path)));
  return app;
}

/** The request body, or undefined when it is longer than max (a chunked body has no declared length). */
async function readAtMost(req: Request, max: number): Promise<Uint8Array | undefined> {
  if (!req.body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of req.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > max) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
