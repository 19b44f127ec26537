import { Hono } from "hono";
import { mayRead } from "../../auth/api-tokens.ts";
import type { KeyProvenance } from "../../hsm/key-manager.ts";
import { listCas } from "../../store/cas.ts";
import { waitingPendingCas } from "../../store/pending-cas.ts";
import { csrKeySha256 } from "../../ca/fingerprint.ts";
import type { AppContext, AppEnv } from "../context.ts";
import { requireRole } from "../require-role.ts";

/** The CA hierarchy with each key's provenance as the HSM reports it now. */
export function caRoutes(ctx: AppContext) {
  const app = new Hono<AppEnv>();
  app.get("/", requireRole(ctx, mayRead), async (c) => {
    const rows = await listCas(ctx.store.db);
    return c.json({
      items: rows.map((row) => {
        let provenance: KeyProvenance | null = null;
        let keyError: string | undefined;
        try {
          // An external CA's key is on no token of ours.
          if (row.keyOrigin !== "external") provenance = ctx.keyStatus.provenance(row.keyLabel);
        } catch (err) {
          keyError = (err as Error).message;
        }
        return {
          id: row.id,
          role: row.role,
          status: row.status,
          subject: row.subject,
          serial: row.serial,
          keyLabel: row.keyLabel,
          keyId: row.keyId,
          keyAlgorithm: row.keyAlgorithm,
          keyOrigin: row.keyOrigin,
          notBefore: row.notBefore.toISOString(),
          notAfter: row.notAfter.toISOString(),
          fingerprintSha256: row.fingerprintSha256,
          parentId: row.parentId,
          keyProvenance: provenance,
          ...(keyError ? { keyError } : {}),
          certificate: row.certificatePem,
        };
      }),
    });
  });
  // Below an external root: the intermediate keys waiting for its signature, with their CSRs.
  app.get("/pending", requireRole(ctx, mayRead), async (c) => {
    const rows = await waitingPendingCas(ctx.store.db);
    return c.json({
      items: rows.map((p) => ({
        id: p.id,
        subject: p.subject,
        reason: p.reason,
        keyLabel: p.keyLabel,
        keyId: p.keyId,
        keyAlgorithm: p.keyAlgorithm,
        keyOrigin: p.keyOrigin,
        publicKeySha256: csrKeySha256(p.csrPem),
        awaitingSignatureSince: p.createdAt.toISOString(),
        csr: p.csrPem,
      })),
    });
  });
  return app;
}
