import net from "node:net";
import type { AcmeErrorType, AcmeIdentifier } from "../problem.ts";
import type { ValidationConfig, ValidationResult } from "./types.ts";

/**
 * Thrown inside a validator to end the validation with a specific ACME
 * problem; the validator's outer catch turns it into a ValidationResult.
 */
export class ValidationFailure extends Error {
  constructor(
    readonly type: AcmeErrorType,
    readonly detail: string,
  ) {
    super(detail);
  }
}

export const OK: ValidationResult = { ok: true };

/** A ValidationFailure becomes a result; anything else is a bug and propagates (index.ts maps it to serverInternal). */
export function failureResult(err: unknown): ValidationResult {
  if (err instanceof ValidationFailure) return { ok: false, error: { type: err.type, detail: err.detail } };
  throw err;
}

/**
 * The signal that ends a validation: the caller's (validateChallenge's
 * overall deadline) if any, and always our own cfg.timeoutMs, so that a
 * validator called directly is bounded too.
 */
export function deadlineSignal(cfg: ValidationConfig, signal?: AbortSignal): AbortSignal {
  const own = AbortSignal.timeout(cfg.timeoutMs);
  return signal ? AbortSignal.any([own, signal]) : own;
}

/**
 * Quotes untrusted bytes (response bodies, TXT values) for a problem detail:
 * at most `max` characters inside the quotes, escapes included, non-printable
 * ASCII escaped, so a client sees what came back without us echoing control
 * characters or megabytes.
 */
export function printable(data: Buffer | string, max = 64): string {
  const text = typeof data === "string" ? data : data.toString("latin1");
  let escaped = "";
  let used = 0;
  for (const c of text) {
    const e = /[^\x20-\x7e]|["\\]/.test(c) ? escapeChar(c) : c;
    if (escaped.length + e.length > max) break;
    escaped += e;
    used += c.length;
  }
  return `"${escaped}"${used < text.length ? "…" : ""}`;
}

function escapeChar(c: string): string {
  if (c === '"' || c === "\\") return "\\" + c;
  const code = c.codePointAt(0)!;
  return code <= 0xff ? "\\x" + code.toString(16).padStart(2, "0") : `\\u{${code.toString(16)}}`;
}

/** A URL for a problem detail: its serialisation is printable ASCII already; only its length is bounded. */
export function shownUrl(url: URL, max = 128): string {
  return url.href.length > max ? url.href.slice(0, max) + "…" : url.href;
}

const LABEL = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?";
const DNS_NAME = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`, "i");

/**
 * Checks an identifier before it goes into a URL, a DNS query or SNI, and
 * returns its normalised value (lower case, no trailing dot). Identifiers
 * were checked when the order was created, but a validator builds network
 * requests from them, so it refuses anything that is not a plain name or IP.
 */
export function checkIdentifier(id: AcmeIdentifier): string {
  if (id.type === "ip") {
    if (net.isIP(id.value) === 0) throw new ValidationFailure("malformed", `${printable(id.value)} is not an IP address`);
    return id.value.toLowerCase();
  }
  const name = id.value.toLowerCase().replace(/\.$/, "");
  if (name.length > 253 || !DNS_NAME.test(name)) {
    throw new ValidationFailure("malformed", `${printable(id.value)} is not a DNS name this validator can check`);
  }
  return name;
}

/** The 4 or 16 bytes of an IP address, or undefined if `ip` is not one. */
export function ipBytes(ip: string): Buffer | undefined {
  if (net.isIPv4(ip)) return Buffer.from(ip.split(".").map(Number));
  if (!net.isIPv6(ip)) return undefined;
  // An embedded IPv4 tail (::ffff:1.2.3.4) is two more 16-bit groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(ip)?.[1];
  let text = ip;
  if (v4) {
    const b = v4.split(".").map(Number) as [number, number, number, number];
    text = ip.slice(0, -v4.length) + ((b[0] << 8) | b[1]).toString(16) + ":" + ((b[2] << 8) | b[3]).toString(16);
  }
  const [head = "", tail] = text.split("::");
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill("0"), ...right];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** The reverse-DNS name of an IP, used as SNI for IP identifiers (RFC 8738 §6). */
export function reverseName(ip: string): string {
  const bytes = ipBytes(ip);
  if (!bytes) throw new ValidationFailure("malformed", `${printable(ip)} is not an IP address`);
  if (bytes.length === 4) return [...bytes].reverse().join(".") + ".in-addr.arpa";
  const nibbles = bytes.toString("hex").split("").reverse();
  return nibbles.join(".") + ".ip6.arpa";
}
