import * as x509 from "@peculiar/x509";
import { Hono } from "hono";
import { caById, listCas } from "../../store/cas.ts";
import { listCrossCertificates } from "../../store/cross-certificates.ts";
import { problem } from "../problem.ts";
import type { AppContext } from "../context.ts";
import { BUNDLE_REFRESH_SECONDS, bundlePem, spiffeBundle, trustedRoots } from "../trust-bundle.ts";

/** Public CA material, served without authentication on the plain HTTP port too. */
export function publicCaRoutes(ctx: AppContext) {
  const app = new Hono();
  const headers = { "content-type": "application/x-pem-file", "cache-control": "public, max-age=300" };
  app.get("/root.pem", (c) => c.body(ctx.issuer().rootPem, 200, headers));
  app.get("/chain.pem", (c) => c.body(ctx.issuer().chainPem, 200, headers));
  // Every root trusted now (a new one during a root rollover too): what a mesh or a relying party installs.
  const bundleCache = `public, max-age=${BUNDLE_REFRESH_SECONDS}`;
  app.get("/bundle.pem", async (c) => {
    const roots = trustedRoots(await listCas(ctx.store.db), new Date());
    return c.body(bundlePem(roots), 200, { ...headers, "cache-control": bundleCache });
  });
  // Cross certificates of a root rollover (the new root signed by the old one, intermediates re-signed under
  // the new root): what a relying party that trusts only one of the roots fetches to build its path.
  app.get("/cross.pem", async (c) => {
    const now = new Date();
    const live = (await listCrossCertificates(ctx.store.db)).filter((x) => !x.revokedAt && x.notAfter > now);
    return c.body(live.map((x) => x.certificatePem.trim() + "\n").join(""), 200, headers);
  });
  // The same roots as a SPIFFE bundle (JWK Set with x509-svid keys) for SPIRE federation, Envoy and SPIFFE libraries.
  app.get("/spiffe-bundle.json", async (c) => c.json(spiffeBundle(await listCas(ctx.store.db), new Date()), 200, { "cache-control": bundleCache }));
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
