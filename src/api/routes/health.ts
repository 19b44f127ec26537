import { withTimeout } from "../../with-timeout.ts";
import { Hono } from "hono";
import type { AppContext } from "../context.ts";
import { problem } from "../problem.ts";

const DB_TIMEOUT_MS = 2_000;

/** /healthz: the process answers. /readyz: the HSM and the database are usable. */
export function healthRoutes(ctx: AppContext) {
  const app = new Hono();
  app.get("/healthz", (c) => c.json({ status: "alive" }));
  app.get("/readyz", async (c) => {
    // Load balancers take this replica out at once, while its in-flight requests finish.
    if (ctx.stopping?.()) return problem(c, "shutting-down", "the service is shutting down; send requests to another replica");
    const hsm = ctx.keyStatus.health();
    const database = await withTimeout(ctx.store.ping(), DB_TIMEOUT_MS).then(
      () => ({ ok: true as const }),
      (err: Error) => ({ ok: false as const, detail: err.message }),
    );
    const checks = {
      hsm: hsm.ok ? "ok" : `down: ${hsm.detail}`,
      database: database.ok ? "ok" : `down: ${database.detail}`,
    };
    if (hsm.ok && database.ok) return c.json({ status: "ready", checks });
    const down = Object.entries(checks)
      .filter(([, v]) => v !== "ok")
      .map(([k, v]) => `${k} ${v}`);
    return problem(c, hsm.ok ? "database-unavailable" : "hsm-unavailable", down.join("; "), { checks });
  });
  return app;
}
