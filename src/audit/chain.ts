import crypto from "node:crypto";

/**
 * The audit log's hash chain. An entry's hash is
 *
 *   SHA-256( canonical-JSON [seq, at, kind, actor, subject, result, details, prev_hash] )
 *
 * as lower-case hex, where `at` is the ISO 8601 UTC instant with
 * milliseconds (Date#toISOString), `subject` is null when absent, and
 * canonical JSON is JSON with object keys sorted (by UTF-16 code units) at
 * every depth and no whitespace. prev_hash is the previous entry's hash (seq
 * order); the first entry's is 64 zeros. A SIEM can recompute every hash
 * from `hsm-ca audit export` alone.
 */
export const GENESIS_HASH = "0".repeat(64);

export type AuditResult = "ok" | "error";

export interface ChainedEntry {
  seq: number;
  at: Date;
  kind: string;
  actor: string;
  subject: string | null;
  result: AuditResult;
  details: Record<string, unknown>;
  prevHash: string;
}

export function entryHash(e: ChainedEntry): string {
  const encoded = canonicalJson([e.seq, e.at.toISOString(), e.kind, e.actor, e.subject ?? null, e.result, e.details, e.prevHash]);
  return crypto.createHash("sha256").update(encoded, "utf8").digest("hex");
}

/** JSON with sorted object keys and no whitespace: one text for one value. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? "null" : canonicalJson(v))).join(",")}]`;
  const obj = value as Record<string, unknown>;
  const parts = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`);
  return `{${parts.join(",")}}`;
}

/** PostgreSQL text and jsonb refuse NUL characters and unpaired surrogates: replace them. */
export function cleanText(s: string): string {
  return s.replace(/\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD");
}

/**
 * Details as they will read back from jsonb: plain JSON values only
 * (bigint and Date as strings, non-finite numbers as null, undefined and
 * functions left out), so that the hash computed before the insert is the
 * one a verifier computes from the stored row.
 */
export function normaliseDetails(details: Record<string, unknown> | undefined): Record<string, unknown> {
  const out = normalise(details ?? {}, 0);
  return out !== null && typeof out === "object" && !Array.isArray(out) ? (out as Record<string, unknown>) : { value: out };
}

function normalise(v: unknown, depth: number): unknown {
  if (v === null || v === undefined) return null;
  switch (typeof v) {
    case "string":
      return cleanText(v);
    case "number":
      return Number.isFinite(v) ? (Object.is(v, -0) ? 0 : v) : null;
    case "boolean":
      return v;
    case "bigint":
      return v.toString();
    case "object":
      break;
    default:
      return null;
  }
  if (depth > 16) return "[too deep]";
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? null : v.toISOString();
  if (v instanceof Error) return cleanText(v.message);
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return Buffer.from(v).toString("hex");
  if (Array.isArray(v)) return v.map((x) => normalise(x, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    if (x === undefined || typeof x === "function" || typeof x === "symbol") continue;
    out[cleanText(k)] = normalise(x, depth + 1);
  }
  return out;
}
