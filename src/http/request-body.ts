import type { IncomingMessage } from "node:http";
import type { Context, MiddlewareHandler } from "hono";

/**
 * Request bodies for the hot POST routes (REST issuance, ACME, the Vault
 * API), read straight from node:http's IncomingMessage with a size limit.
 * Hono's bodyLimit and c.req.json() reach the body through a whole Fetch
 * Request (an undici Request, an AbortSignal, a web stream), which cost
 * more per issuance than the lint gate (docs/benchmarks.md, profile
 * section). Outside node:http (app.request() in tests) the body comes
 * from the Fetch Request as before.
 */

const bodies = new WeakMap<Context, Buffer>();

/**
 * Reads the whole body, at most `maxSize` bytes, before the handlers run.
 * A larger one (by Content-Length, or once that many bytes came) is
 * answered by `onTooLarge` without reading the rest: the connection is then
 * unusable, so it should say `Connection: close`.
 */
export function readBodyWithin(maxSize: number, onTooLarge: (c: Context) => Response | Promise<Response>): MiddlewareHandler {
  return async (c, next) => {
    const declared = Number(c.req.header("content-length") ?? NaN);
    if (declared > maxSize) return onTooLarge(c);
    const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
    const body = incoming ? await readIncoming(incoming, maxSize) : await readFetchBody(c, maxSize);
    if (!body) return onTooLarge(c);
    bodies.set(c, body);
    await next();
  };
}

/** The body readBodyWithin read (or, on a route without it, the Fetch Request's). */
export async function requestBody(c: Context): Promise<Buffer> {
  return bodies.get(c) ?? Buffer.from(await c.req.arrayBuffer());
}

export async function requestText(c: Context): Promise<string> {
  return (await requestBody(c)).toString("utf8");
}

/** The body as JSON; undefined when it is not JSON. */
export async function requestJson(c: Context): Promise<unknown> {
  try {
    return JSON.parse(await requestText(c));
  } catch {
    return undefined;
  }
}

function readIncoming(incoming: IncomingMessage, maxSize: number): Promise<Buffer | undefined> {
  if (incoming.readableEnded) return Promise.resolve(Buffer.alloc(0));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (result: Buffer | undefined, err?: Error) => {
      incoming.off("data", onData);
      incoming.off("end", onEnd);
      incoming.off("error", onError);
      incoming.off("aborted", onAborted);
      if (err) reject(err);
      else resolve(result);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxSize) {
        incoming.pause();
        done(undefined);
      } else chunks.push(chunk);
    };
    const onEnd = () => done(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    const onError = (err: Error) => done(undefined, err);
    const onAborted = () => done(undefined, new Error("the client closed the connection before the body was complete"));
    incoming.on("data", onData);
    incoming.on("end", onEnd);
    incoming.on("error", onError);
    incoming.on("aborted", onAborted);
  });
}

async function readFetchBody(c: Context, maxSize: number): Promise<Buffer | undefined> {
  const body = Buffer.from(await c.req.arrayBuffer());
  return body.length > maxSize ? undefined : body;
}
