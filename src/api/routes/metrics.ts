import crypto from "node:crypto";
import { Hono } from "hono";
import type { Metrics } from "../../metrics/catalogue.ts";
import type { AppEnv } from "../context.ts";
import { problem } from "../problem.ts";

/**
 * GET /metrics in the Prometheus text format, on both listeners.
 * Unauthenticated, as Prometheus expects, unless HSM_CA_METRICS_TOKEN is
 * set: then only `Authorization: Bearer <that token>` is answered.
 * The token is compared as a SHA-256 digest in constant time and never
 * logged; it is not an API token and opens nothing else.
 */
export function metricsRoutes(metrics: Metrics, bearerToken?: string) {
  const app = new Hono<AppEnv>();
  const expected = bearerToken === undefined ? undefined : digest(bearerToken);
  app.get("/metrics", async (c) => {
    if (expected) {
      const given = /^Bearer\s+(\S+)$/i.exec(c.req.header("authorization") ?? "")?.[1];
      if (!given || !crypto.timingSafeEqual(digest(given), expected)) {
        c.header("www-authenticate", 'Bearer realm="hsm-ca metrics"');
        return problem(c, "unauthorized", "send the metrics token (HSM_CA_METRICS_TOKEN) as 'Authorization: Bearer <token>'");
      }
    }
    return c.body(await metrics.registry.metrics(), 200, { "content-type": metrics.registry.contentType, "cache-control": "no-store" });
  });
  return app;
}

function digest(text: string): Buffer {
  return crypto.createHash("sha256").update(text, "utf8").digest();
}
