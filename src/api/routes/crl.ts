import { Hono } from "hono";
import { parseCrlName } from "../../revocation/urls.ts";
import { latestCrl, latestCrlTimes } from "../../store/crls.ts";
import type { Database } from "../../store/database.ts";
import { problem } from "../problem.ts";

/** CRLs over plain HTTP (RFC 5280 §4.2.1.13): DER, cacheable until nextUpdate. */
export function crlRoutes(db: Database, now: () => Date) {
  const app = new Hono();
  app.get("/:name", async (c) => {
    const name = parseCrlName(c.req.param("name"));
    const crl = name && (await latestCrlTimes(db, name.issuerId, name.partition, name.kind));
    if (!name || !crl) return problem(c, "not-found", `no CRL ${c.req.param("name")}`);
    const etag = `"${crl.issuerId}.${crl.partition}.${crl.kind}.${crl.crlNumber}"`;
    const maxAge = Math.max(0, Math.floor((crl.nextUpdate.getTime() - now().getTime()) / 1000));
    const headers = {
      etag,
      "last-modified": crl.thisUpdate.toUTCString(),
      expires: crl.nextUpdate.toUTCString(),
      "cache-control": `public, max-age=${maxAge}, no-transform`,
    };
    if (c.req.header("if-none-match") === etag) return c.body(null, 304, headers);
    const full = await latestCrl(db, name.issuerId, name.partition, name.kind);
    if (!full) return problem(c, "not-found", `no CRL ${c.req.param("name")}`);
    return c.body(new Uint8Array(full.der), 200, { ...headers, etag: `"${full.issuerId}.${full.partition}.${full.kind}.${full.crlNumber}"`, "content-type": "application/pkix-crl" });
  });
  return app;
}
