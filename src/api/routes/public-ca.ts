import * as x509 from "@peculiar/x509";
import { Hono } from "hono";
import { caById } from "../../store/cas.ts";
import { problem } from "../problem.ts";
import type { AppContext } from "../context.ts";

/** Public CA material, served without authentication on the plain HTTP port too. */
export function publicCaRoutes(ctx: AppContext) {
  const app = new Hono();
  const headers = { "content-type": "application/x-pem-file", "cache-control": "public, max-age=300" };
  app.get("/root.pem", (c) => c.body(ctx.issuer().rootPem, 200, headers));
  app.get("/chain.pem", (c) => c.body(ctx.issuer().chainPem, 200, headers));
  // Authority Information Access caIssuers: each CA's certificate, DER (RFC 5280 §4.2.2.1).
  app.get("/:file{[0-9]+\\.der}", async (c) => {
    const ca = await caById(ctx.store.db, Number(c.req.param("file").slice(0, -4)));
    if (!ca) return problem(c, "not-found", "no such CA");
    return c.body(new Uint8Array(new x509.X509Certificate(ca.certificatePem).rawData), 200, {
      "content-type": "application/pkix-cert",
      "cache-control": "public, max-age=3600",
    });
  });
  return app;
}
