import { Hono } from "hono";
import type { AppContext } from "../context.ts";

/** Public CA material, served without authentication on the plain HTTP port too. */
export function publicCaRoutes(ctx: AppContext) {
  const app = new Hono();
  const headers = { "content-type": "application/x-pem-file", "cache-control": "public, max-age=300" };
  app.get("/root.pem", (c) => c.body(ctx.issuer().rootPem, 200, headers));
  app.get("/chain.pem", (c) => c.body(ctx.issuer().chainPem, 200, headers));
  return app;
}
