import type { Context } from "hono";
import { REJECTIONS, type RejectionKind } from "../errors.ts";

export const PROBLEM_TYPE_PREFIX = "urn:hsm-ca:problem:";

/** An RFC 9457 problem document. */
export function problem(c: Context, kind: RejectionKind | "internal", detail: string, extra: Record<string, unknown> = {}): Response {
  const { status, title } = kind === "internal" ? { status: 500, title: "Internal error" } : REJECTIONS[kind];
  return c.body(
    JSON.stringify({ type: PROBLEM_TYPE_PREFIX + kind, title, status, detail, instance: c.req.path, ...extra }),
    status as 400,
    { "content-type": "application/problem+json" },
  );
}
