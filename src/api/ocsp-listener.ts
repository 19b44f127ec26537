import http from "node:http";
import type { OcspService } from "../revocation/ocsp-service.ts";
import type { AppContext } from "./context.ts";
import { recordRequest, requestIdOf } from "./request-log.ts";
import { MAX_OCSP_REQUEST_BYTES, ocspHttpAnswer, ocspRequestFromPath } from "./routes/ocsp.ts";

type Observer = Pick<AppContext, "log" | "metrics">;

type Listener = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/**
 * OCSP on the plain-HTTP listener, answered on node:http itself. Relying
 * parties ask OCSP far more often than anything else, and the answer is a
 * lookup in the pre-signed cache: turning each request into a Fetch
 * Request and Response for Hono cost most of the time spent per answer
 * (about a third of a bare node:http server's rate for GET, a tenth for
 * POST). Everything else goes on to `next` (the Hono app). The same
 * answers as routes/ocsp.ts, which serves OCSP on the HTTPS listener, and
 * the same request log line and HTTP metrics as every other request.
 */
export function withOcspFastPath(ocsp: () => OcspService | undefined, observer: Observer, next: Listener): Listener {
  return (req, res) => {
    const url = req.url ?? "";
    if (!(url === "/ocsp" || url.startsWith("/ocsp/"))) return next(req, res);
    const started = performance.now();
    const reqId = requestIdOf(req.headers["x-request-id"] as string | undefined);
    const done = (route: string) =>
      recordRequest(observer, { reqId, listener: "http", method: req.method ?? "", route, status: res.statusCode, seconds: (performance.now() - started) / 1000 });
    if (req.method === "GET" || req.method === "HEAD") {
      void reply(res, reqId, ocsp(), ocspRequestFromPath(url), req.method === "HEAD").then(() => done("/ocsp/*"));
      return;
    }
    if (req.method !== "POST" || (url !== "/ocsp" && url !== "/ocsp/")) return next(req, res);
    const declared = Number(req.headers["content-length"] ?? 0);
    if (declared > MAX_OCSP_REQUEST_BYTES) {
      // The body is not read: the connection cannot be reused.
      res.setHeader("connection", "close");
      void reply(res, reqId, ocsp(), undefined).then(() => done("/ocsp"));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLong = false;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_OCSP_REQUEST_BYTES) tooLong = true;
      else chunks.push(chunk);
    });
    req.on("end", () => {
      if (tooLong) res.setHeader("connection", "close");
      void reply(res, reqId, ocsp(), tooLong ? undefined : Buffer.concat(chunks)).then(() => done("/ocsp"));
    });
    req.on("error", () => res.destroy());
  };
}

async function reply(res: http.ServerResponse, reqId: string, service: OcspService | undefined, der: Uint8Array | undefined, headOnly = false): Promise<void> {
  try {
    const { body, headers } = await ocspHttpAnswer(service, der, new Date());
    headers["content-length"] = String(body.length);
    headers["x-request-id"] = reqId;
    res.writeHead(200, headers);
    res.end(headOnly ? undefined : body);
  } catch {
    // respond() never throws; this is the socket going away under us.
    res.destroy();
  }
}

/** node:http's createServer with the fast path in front of the listener @hono/node-server gives it. */
export function ocspFastPathServer(ocsp: () => OcspService | undefined, observer: Observer): typeof http.createServer {
  return ((options: http.ServerOptions, listener: Listener) => http.createServer(options, withOcspFastPath(ocsp, observer, listener))) as typeof http.createServer;
}
