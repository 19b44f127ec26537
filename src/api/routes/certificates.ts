import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { readBodyWithin, requestJson } from "../../http/request-body.ts";
import { z } from "zod";
import { mayIssue, mayRead, type Principal } from "../../auth/api-tokens.ts";
import { Rejection } from "../../errors.ts";
import { approvalsRequiredFor, requestIssuance } from "../../approvals/issue.ts";
import { issueCertificate } from "../../issuance/issue-certificate.ts";
import { countIssuance } from "../../metrics/issuance-outcome.ts";
import type { RevocationPublishing } from "../../revocation/pointers.ts";
import { parseReason, reasonName } from "../../revocation/reasons.ts";
import { revoke } from "../../revocation/revoke.ts";
import { certificateBySerial, listCertificates, type CertificateRow } from "../../store/certificates.ts";
import type { AppContext, AppEnv } from "../context.ts";
import { problem } from "../problem.ts";
import { requireRole } from "../require-role.ts";
import { approvalDepsOf, approvalTtlMs, requestView } from "./requests.ts";

export const MAX_BODY_BYTES = 64 * 1024;

const issueBody = z.object({
  csr: z.string().min(1).max(MAX_BODY_BYTES),
  profile: z.string().min(1).max(100),
  validity: z.string().max(20).optional(),
  /** The kind of certificate the client wants: set, a profile of the other kind is refused (wrong-profile-kind). */
  isCA: z.boolean().optional(),
});

const revokeBody = z.object({
  reason: z.union([z.string().max(40), z.number().int()]).default("unspecified"),
  invalidityDate: z.string().datetime({ offset: true }).optional(),
});

const listQuery = z.object({
  profile: z.string().max(100).optional(),
  status: z.enum(["valid", "revoked"]).optional(),
  cursor: z.string().regex(/^[0-9]{1,15}$/, "cursor must be a value from nextCursor").optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});

export function certificateRoutes(ctx: AppContext, revocation?: RevocationPublishing) {
  const app = new Hono<AppEnv>();

  app.post(
    "/",
    readBodyWithin(MAX_BODY_BYTES, (c) => {
      // The unread body makes the connection unusable: tell the client not to reuse it.
      c.header("connection", "close");
      return problem(c, "payload-too-large", `send at most ${MAX_BODY_BYTES} bytes`);
    }),
    requireRole(ctx, (p) => p.role === "admin" || p.role === "issuer"),
    async (c) => {
      const body = issueBody.safeParse(await requestJson(c));
      if (!body.success) {
        const issue = body.error.issues[0];
        const detail = issue ? `${issue.path.join(".") || "body"}: ${issue.message}` : "invalid body";
        return problem(c, "malformed-request", `expected JSON {csr, profile, validity?, isCA?}; ${detail}`);
      }
      const { csr, profile, validity } = body.data;
      const kind = body.data.isCA === undefined ? undefined : body.data.isCA ? "ca" : "end-entity";
      if (!ctx.profiles.has(profile)) {
        throw new Rejection("unknown-profile", `no profile "${profile}"; known: ${[...ctx.profiles.keys()].join(", ")}`);
      }
      const principal = c.get("principal");
      if (!mayIssue(principal, profile)) return problem(c, "forbidden", `this token may not issue from profile ${profile}`);
      if (approvalsRequiredFor(ctx, profile) > 0) {
        // M-of-N: checked now (a bad request is refused and nothing is stored), issued once admins approve.
        const state = await countIssuance(
          ctx.metrics,
          "rest",
          profile,
          () => requestIssuance(approvalDepsOf(ctx, revocation), { csrPem: csr, profile, validity, kind, principal, ttlMs: approvalTtlMs(ctx) }),
          () => "pending_approval",
        );
        ctx.log.info({ request: state.request.id, profile, tokenId: principal.tokenId, required: state.request.required }, "certificate request waits for approval");
        c.header("location", `/api/v1/requests/${state.request.id}`);
        return c.json(requestView(state), 202);
      }
      const { issuer, row } = await countIssuance(ctx.metrics, "rest", profile, async () => {
        const issuer = ctx.issuer();
        const row = await issueCertificate(
          { db: ctx.store.db, profiles: ctx.profiles, issuer, revocation, audit: ctx.audit },
          { csrPem: csr, profile, validity, kind, requestedBy: principal.tokenId },
        );
        return { issuer, row };
      });
      ctx.log.info({ serial: row.serial, profile, tokenId: principal.tokenId }, "certificate issued");
      c.header("location", `/api/v1/certificates/${row.serial}`);
      return c.json({ ...view(row), chain: issuer.chainPem }, 201);
    },
  );

  app.get("/", requireRole(ctx, mayRead), async (c) => {
    const q = listQuery.safeParse(c.req.query());
    if (!q.success) return problem(c, "malformed-request", q.error.issues[0]!.message);
    const scope = scopeOf(c.get("principal"));
    if (scope && q.data.profile && !scope.profiles.includes(q.data.profile)) {
      return problem(c, "forbidden", `this token may not read profile ${q.data.profile}`);
    }
    const rows = await listCertificates(ctx.store.db, {
      profile: q.data.profile,
      profiles: scope?.profiles,
      requestedBy: scope?.requestedBy,
      status: q.data.status,
      afterId: q.data.cursor === undefined ? undefined : Number(q.data.cursor),
      limit: q.data.limit,
    });
    const last = rows.at(-1);
    return c.json({
      items: rows.map(view),
      nextCursor: rows.length === q.data.limit && last ? String(last.id) : null,
    });
  });

  app.post("/:serial/revoke", bodyLimit({ maxSize: 4096, onError: (c) => problem(c, "payload-too-large", "send at most 4096 bytes") }), requireRole(ctx, (p) => p.role === "admin" || p.role === "issuer"), async (c) => {
    const serial = c.req.param("serial").toLowerCase();
    const body = revokeBody.safeParse(await c.req.json().catch(() => undefined));
    if (!body.success) {
      const issue = body.error.issues[0];
      return problem(c, "malformed-request", `expected JSON {reason, invalidityDate?}; ${issue ? `${issue.path.join(".") || "body"}: ${issue.message}` : ""}`);
    }
    const reason = parseReason(body.data.reason);
    if (reason === undefined) throw new Rejection("bad-revocation-reason", `unknown reason "${body.data.reason}"; use an RFC 5280 name such as keyCompromise or superseded`);
    const row = /^[0-9a-f]{1,40}$/.test(serial) ? await certificateBySerial(ctx.store.db, serial) : undefined;
    const principal = c.get("principal");
    const scope = scopeOf(principal);
    // Checked before anything changes: another tenant's certificate is neither revoked nor its key blocked.
    if (!row || !inScope(scope, row)) return notFound(c, serial, scope);
    const outcome = await revoke(
      { db: ctx.store.db, now: () => new Date(), audit: ctx.audit, metrics: ctx.metrics },
      { serial, reason, invalidityDate: body.data.invalidityDate ? new Date(body.data.invalidityDate) : undefined, by: principal.tokenId },
    );
    ctx.log.info({ serial, reason: reasonName(reason), tokenId: principal.tokenId, alreadyRevoked: outcome.alreadyRevoked }, "certificate revoked");
    return c.json({ ...view(outcome.row), alreadyRevoked: outcome.alreadyRevoked });
  });

  app.get("/:serial", requireRole(ctx, mayRead), async (c) => {
    const serial = c.req.param("serial").toLowerCase();
    const row = /^[0-9a-f]{1,40}$/.test(serial) ? await certificateBySerial(ctx.store.db, serial) : undefined;
    const scope = scopeOf(c.get("principal"));
    if (!row || !inScope(scope, row)) return notFound(c, serial, scope);
    return c.json(view(row));
  });

  return app;
}

/** The certificates an issuer token may see and revoke: those it requested itself, from its profiles. */
interface IssuerScope {
  requestedBy: string;
  profiles: string[];
}

/**
 * Issuer tokens are tenants: one sees and revokes only the certificates it
 * requested itself (REST, `hsm-ca issue` or an approved request made with
 * it), never another token's or an ACME account's, even from the same
 * profile. Admins and auditors see all (undefined: no scope).
 */
function scopeOf(p: Principal): IssuerScope | undefined {
  return p.role === "issuer" ? { requestedBy: p.tokenId, profiles: p.profiles } : undefined;
}

function inScope(scope: IssuerScope | undefined, row: CertificateRow): boolean {
  return !scope || (row.requestedBy === scope.requestedBy && scope.profiles.includes(row.profile));
}

/**
 * The same 404 whether the serial is unknown or belongs to someone else, so
 * that an issuer token learns nothing about other tenants' certificates;
 * the detail says where an issuer token looks.
 */
function notFound(c: Context, serial: string, scope: IssuerScope | undefined): Response {
  const among = scope ? " among those this token requested (an issuer token sees and revokes only its own certificates)" : "";
  return problem(c, "not-found", `no certificate with serial ${serial}${among}`);
}

function view(row: CertificateRow) {
  return {
    serial: row.serial,
    profile: row.profile,
    status: row.status,
    subject: row.subject,
    sans: row.sans,
    notBefore: row.notBefore.toISOString(),
    notAfter: row.notAfter.toISOString(),
    fingerprintSha256: row.fingerprintSha256,
    ...(row.revokedAt
      ? {
          revokedAt: row.revokedAt.toISOString(),
          revocationReason: reasonName(row.revocationReason ?? 0),
          ...(row.invalidityDate ? { invalidityDate: row.invalidityDate.toISOString() } : {}),
        }
      : {}),
    certificate: row.certificatePem,
  };
}
