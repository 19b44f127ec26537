import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { z } from "zod";
import { DEFAULT_APPROVAL_TTL_MS, type ApprovalDeps } from "../../approvals/context.ts";
import { decideApprovalRequest, type Decision } from "../../approvals/decisions.ts";
import { getApprovalRequest, listApprovalRequestStates, type RequestState } from "../../approvals/requests.ts";
import type { RevocationPublishing } from "../../revocation/pointers.ts";
import type { AppContext, AppEnv } from "../context.ts";
import { problem } from "../problem.ts";
import { requireRole } from "../require-role.ts";

/** What the approval workflow runs on behind the REST API. */
export function approvalDepsOf(ctx: AppContext, revocation?: RevocationPublishing): ApprovalDeps {
  return {
    db: ctx.store.db,
    profiles: ctx.profiles,
    issuer: () => ctx.issuer(),
    revocation,
    log: ctx.log,
    now: () => new Date(),
    audit: ctx.audit,
    metrics: ctx.metrics,
    // A CA change approved here is carried out by the service's approved-requests job, not in this request;
    // the rotation it makes is picked up by every replica's hierarchy watch within seconds.
    caChangeApproved: ctx.caChangeApproved,
  };
}

export function approvalTtlMs(ctx: AppContext): number {
  return ctx.approvals?.ttlMs ?? DEFAULT_APPROVAL_TTL_MS;
}

const listQuery = z.object({
  status: z.enum(["pending", "approved", "rejected", "expired", "done", "failed"]).optional(),
  kind: z.enum(["issue", "rotate", "destroy-key"]).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});

/**
 * /api/v1/requests: requests waiting for M-of-N approval. Admins and
 * auditors list and read them all, a requester reads its own; only admins
 * approve or reject, never their own request.
 */
export function requestRoutes(ctx: AppContext, revocation?: RevocationPublishing) {
  const app = new Hono<AppEnv>();
  const deps = approvalDepsOf(ctx, revocation);

  app.get("/", requireRole(ctx, (p) => p.role === "admin" || p.role === "auditor"), async (c) => {
    const q = listQuery.safeParse(c.req.query());
    if (!q.success) return problem(c, "malformed-request", `${q.error.issues[0]!.path.join(".")}: ${q.error.issues[0]!.message}`);
    const states = await listApprovalRequestStates(deps, q.data);
    return c.json({ items: states.map(requestView) });
  });

  app.get("/:id", requireRole(ctx, () => true), async (c) => {
    return c.json(requestView(await getApprovalRequest(deps, c.req.param("id"), c.get("principal"))));
  });

  const decide = (decision: Decision) => async (c: Context<AppEnv>) => {
    const outcome = await decideApprovalRequest(deps, c.req.param("id")!, c.get("principal"), decision);
    return c.json(requestView(outcome.state));
  };
  const small = bodyLimit({ maxSize: 4096, onError: (c) => problem(c, "payload-too-large", "send at most 4096 bytes") });
  app.post("/:id/approve", small, requireRole(ctx, (p) => p.role === "admin"), decide("approve"));
  app.post("/:id/reject", small, requireRole(ctx, (p) => p.role === "admin"), decide("reject"));
  return app;
}

/** A request as the API shows it; an issued certificate comes with its chain, like POST /certificates. */
export function requestView(state: RequestState) {
  const r = state.request;
  return {
    id: r.id,
    kind: r.kind,
    status: r.status,
    required: r.required,
    approvals: state.approvals.map((a) => ({ approver: a.approver, decision: a.decision, at: a.at.toISOString() })),
    requestedBy: r.requestedBy,
    createdAt: r.createdAt.toISOString(),
    expiresAt: r.expiresAt.toISOString(),
    /** issue: {csr, profile, validity}; rotate: what is retired and created; destroy-key: which CA's keys. */
    payload: r.payload,
    ...(r.result ? { result: r.result } : {}),
    ...(state.certificate ? { certificate: state.certificate.certificatePem, chain: state.chainPem ?? null } : {}),
  };
}
