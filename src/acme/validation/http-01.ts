import http from "node:http";
import https from "node:https";
import net from "node:net";
import type { Resolver } from "node:dns/promises";
import type { AcmeIdentifier } from "../problem.ts";
import { OK, ValidationFailure, checkIdentifier, deadlineSignal, failureResult, printable } from "./common.ts";
import { makeResolver, resolveAddress } from "./resolve.ts";
import type { ValidationConfig, ValidationResult } from "./types.ts";

/** A key authorization is ~87 bytes; anything past this is not a match, and we stop reading. */
const MAX_BODY = 4096;
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

    for (let redirects = 0; ; redirects++) {
      const res = await fetchOnce(url, resolver, abort, cfg);
      if (res.location === undefined) return checkResponse(url, res, keyAuthorization);
      if (redirects >= cfg.maxRedirects) {
        throw new ValidationFailure("connection", `Too many redirects (more than ${cfg.maxRedirects}), last at ${url}`);
      }
      url = redirectTarget(url, res.location);
    }
  } catch (err) {
    return failureResult(err);
  }
}

function checkResponse(url: URL, res: Fetched, keyAuthorization: string): ValidationResult {
  if (res.status !== 200) {
    throw new ValidationFailure("unauthorized", `Invalid response from ${url}: HTTP ${res.status}`);
  }
  if (res.truncated) {
    throw new ValidationFailure(
      "incorrectResponse",
      `Response from ${url} is longer than ${MAX_BODY} bytes; it starts ${printable(res.body)}`,
    );
  }
  // RFC 8555 §8.3: "after removing trailing whitespace".
  const body = res.body.toString("utf8").replace(/\s+$/, "");
  if (body !== keyAuthorization) {
    throw new ValidationFailure("incorrectResponse", `Wrong key authorization from ${url}: got ${printable(res.body)}`);
  }
  return OK;
}

/** Only http: and https: redirects are followed; anything else ends the validation. */
function redirectTarget(from: URL, location: string): URL {
  let next: URL;
  try {
    next = new URL(location, from);
  } catch {
    throw new ValidationFailure("connection", `Redirect from ${from} to an invalid URL ${printable(location)}`);
  }
  if (next.protocol !== "http:" && next.protocol !== "https:") {
    const scheme = next.protocol.replace(/:$/, "");
    throw new ValidationFailure(
      "connection",
      `Refused redirect from ${from} to ${printable(location)}: scheme "${scheme}" is not http or https`,
    );
  }
  return next;
}

/** One GET, connecting to the address our resolver gives (or the IP literal in the URL). */
async function fetchOnce(url: URL, resolver: Resolver, signal: AbortSignal, cfg: ValidationConfig): Promise<Fetched> {
  const hostname = url.hostname.replace(/^\[|\]$/g, "");
  // Resolve up front so DNS failures are "dns" problems, then hand the
  // address to http.request through `lookup` so the Host header and SNI
  // still carry the name. Node skips `lookup` for IP literals.
  const resolved = net.isIP(hostname) ? undefined : await resolveAddress(resolver, hostname);
  const lookup: net.LookupFunction = (_name, options, callback) => {
    const { address, family } = resolved!;
    if (options.all) callback(null, [{ address, family }]);
    else callback(null, address, family);
  };

  const client = url.protocol === "https:" ? https : http;
  return new Promise<Fetched>((resolve, reject) => {
    const req = client.request(url, {
      method: "GET",
      agent: false, // a fresh connection per validation, never a pooled one
      lookup: resolved ? lookup : undefined,
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
  if (signal.aborted) return new ValidationFailure("connection", `Timed out after ${cfg.timeoutMs} ms fetching ${url}`);
  const code = (err as NodeJS.ErrnoException).code;
  const why = code === "ECONNREFUSED" ? "connection refused" : code === "ECONNRESET" ? "connection reset" : (code ?? err.message);
  return new ValidationFailure("connection", `Error fetching ${url}: ${why}`);
}
