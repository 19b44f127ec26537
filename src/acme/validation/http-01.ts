import http from "node:http";
import https from "node:https";
import net from "node:net";
import type { Resolver } from "node:dns/promises";
import type { AcmeIdentifier } from "../problem.ts";
import { OK, ValidationFailure, checkIdentifier, deadlineSignal, failureResult, printable, shownUrl } from "./common.ts";
import { effectivePort, ownEndpoint } from "./own-endpoints.ts";
import { makeResolver, resolveAddress } from "./resolve.ts";
import type { ValidationConfig, ValidationResult } from "./types.ts";

/** A key authorization is ~87 bytes; anything past this is not a match, and we stop reading. */
const MAX_BODY = 4096;
/** How much of a wrong answer a problem detail quotes. */
const EXCERPT_CHARS = 64;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

interface Fetched {
  status: number;
  location?: string;
  body: Buffer;
  truncated: boolean;
}

/**
 * http-01 (RFC 8555 §8.3): GET http://<identifier>:<httpPort>/.well-known/acme-challenge/<token>
 * and compare the body, trailing whitespace removed, with the key authorization.
 *
 * Redirects are followed as §8.3 and §10.2 allow and no further: http or
 * https only, to the http-01 port or the HTTPS port (cfg.httpPort and
 * cfg.tlsAlpnPort, 80 and 443 in production), at most cfg.maxRedirects of
 * them, and never to the CA's own listeners or public URLs (checked on the
 * address each hop resolves to, so a name pointing at the CA is refused too).
 */
export async function validateHttp01(
  id: AcmeIdentifier,
  token: string,
  keyAuthorization: string,
  cfg: ValidationConfig,
  signal?: AbortSignal,
): Promise<ValidationResult> {
  const abort = deadlineSignal(cfg, signal);
  try {
    const host = checkIdentifier(id);
    // The token goes into a URL path: only base64url characters (RFC 8555 §8.1).
    if (!/^[A-Za-z0-9_-]+$/.test(token)) throw new ValidationFailure("malformed", "token is not base64url");
    const resolver = makeResolver(cfg, abort);
    const urlHost = net.isIPv6(host) ? `[${host}]` : host;
    let url = new URL(`http://${urlHost}:${cfg.httpPort}/.well-known/acme-challenge/${token}`);
    let from: URL | undefined;

    for (let redirects = 0; ; redirects++) {
      const target = await addressOf(url, resolver);
      const own = ownEndpoint(cfg.ownEndpoints, url, target.address);
      if (own) {
        const what = from ? `redirect from ${shownUrl(from)} to ${shownUrl(url)}` : `request to ${shownUrl(url)}`;
        throw new ValidationFailure("connection", `Refused ${what}: it reaches ${own}`);
      }
      const res = await fetchOnce(url, target, abort, cfg);
      if (res.location === undefined) return checkResponse(url, res, keyAuthorization);
      if (redirects >= cfg.maxRedirects) {
        throw new ValidationFailure("connection", `Too many redirects (more than ${cfg.maxRedirects}), last at ${shownUrl(url)}`);
      }
      from = url;
      url = redirectTarget(url, res.location, cfg);
    }
  } catch (err) {
    return failureResult(err);
  }
}

function checkResponse(url: URL, res: Fetched, keyAuthorization: string): ValidationResult {
  if (res.status !== 200) {
    throw new ValidationFailure("unauthorized", `Invalid response from ${shownUrl(url)}: HTTP ${res.status}`);
  }
  // RFC 8555 §8.3: "after removing trailing whitespace".
  if (!res.truncated && res.body.toString("utf8").replace(/\s+$/, "") === keyAuthorization) return OK;
  const size = res.truncated ? `longer than ${MAX_BODY} bytes` : `${res.body.length} bytes`;
  throw new ValidationFailure(
    "incorrectResponse",
    `The response from ${shownUrl(url)} did not match the key authorization (${size})${excerpt(res.body)}`,
  );
}

/**
 * A short quote of a wrong answer, to help the applicant see what their
 * server sent; nothing when it looks like PEM or binary (a certificate, a
 * key, compressed data): whatever a redirect led us to, we do not relay it.
 */
function excerpt(body: Buffer): string {
  if (body.length === 0 || body.includes("-----BEGIN")) return "";
  const head = body.subarray(0, EXCERPT_CHARS);
  const unprintable = head.filter((b) => (b < 0x20 || b > 0x7e) && b !== 0x09 && b !== 0x0a && b !== 0x0d).length;
  if (unprintable * 4 > head.length) return "";
  return `; it starts ${printable(head, EXCERPT_CHARS)}`;
}

/** Resolves a redirect's Location and applies §8.3's limits: scheme and port. */
function redirectTarget(from: URL, location: string, cfg: ValidationConfig): URL {
  let next: URL;
  try {
    next = new URL(location, from);
  } catch {
    throw new ValidationFailure("connection", `Redirect from ${shownUrl(from)} to an invalid URL ${printable(location)}`);
  }
  const refused = (why: string) =>
    new ValidationFailure("connection", `Refused redirect from ${shownUrl(from)} to ${printable(location, 128)}: ${why}`);
  if (next.protocol !== "http:" && next.protocol !== "https:") {
    throw refused(`scheme "${next.protocol.replace(/:$/, "")}" is not http or https`);
  }
  const port = effectivePort(next);
  if (port !== cfg.httpPort && port !== cfg.tlsAlpnPort) {
    throw refused(`port ${port} is neither the http-01 port ${cfg.httpPort} nor the HTTPS port ${cfg.tlsAlpnPort}`);
  }
  return next;
}

/** The address to connect to: the IP literal in the URL, or what our resolver gives for its name. */
async function addressOf(url: URL, resolver: Resolver): Promise<{ address: string; family: 4 | 6; resolved: boolean }> {
  const hostname = url.hostname.replace(/^\[|\]$/g, "");
  const family = net.isIP(hostname);
  if (family !== 0) return { address: hostname, family: family as 4 | 6, resolved: false };
  return { ...(await resolveAddress(resolver, hostname)), resolved: true };
}

/** One GET to `target`, the address addressOf found for the URL. */
function fetchOnce(url: URL, target: { address: string; family: 4 | 6; resolved: boolean }, signal: AbortSignal, cfg: ValidationConfig): Promise<Fetched> {
  // Resolved up front (DNS failures are "dns" problems, and the CA's own
  // addresses are refused before any connection); the address goes to
  // http.request through `lookup` so the Host header and SNI still carry
  // the name. Node skips `lookup` for IP literals.
  const lookup: net.LookupFunction = (_name, options, callback) => {
    const { address, family } = target;
    if (options.all) callback(null, [{ address, family }]);
    else callback(null, address, family);
  };

  const client = url.protocol === "https:" ? https : http;
  return new Promise<Fetched>((resolve, reject) => {
    const req = client.request(url, {
      method: "GET",
      agent: false, // a fresh connection per validation, never a pooled one
      lookup: target.resolved ? lookup : undefined,
      signal,
      headers: { "User-Agent": "hsm-ca ACME validator", Accept: "*/*" },
      // RFC 8555 §8.3: a redirect to https is followed without checking the
      // certificate; the key authorization in the body is the proof.
      rejectUnauthorized: false,
    });
    const fail = (err: Error) => reject(connectionFailure(err, url, signal, cfg));
    req.on("error", fail);
    req.on("response", (res) => {
      const status = res.statusCode ?? 0;
      const location = res.headers.location;
      if (REDIRECT_STATUSES.has(status) && location !== undefined) {
        res.destroy();
        resolve({ status, location, body: Buffer.alloc(0), truncated: false });
        return;
      }
      const chunks: Buffer[] = [];
      let length = 0;
      res.on("data", (chunk: Buffer) => {
        chunks.push(chunk);
        length += chunk.length;
        if (length > MAX_BODY) {
          res.destroy();
          resolve({ status, body: Buffer.concat(chunks).subarray(0, MAX_BODY), truncated: true });
        }
      });
      res.on("end", () => resolve({ status, body: Buffer.concat(chunks), truncated: false }));
      res.on("error", fail);
    });
    req.end();
  });
}

function connectionFailure(err: Error, url: URL, signal: AbortSignal, cfg: ValidationConfig): ValidationFailure {
  if (signal.aborted) return new ValidationFailure("connection", `Timed out after ${cfg.timeoutMs} ms fetching ${shownUrl(url)}`);
  const code = (err as NodeJS.ErrnoException).code;
  const why = code === "ECONNREFUSED" ? "connection refused" : code === "ECONNRESET" ? "connection reset" : (code ?? err.message);
  return new ValidationFailure("connection", `Error fetching ${shownUrl(url)}: ${why}`);
}
