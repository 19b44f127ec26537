import type { Context } from "hono";
import { Hono } from "hono";
import { readBodyWithin } from "../http/request-body.ts";
import { orderIdsOfAccount } from "../store/acme-orders.ts";
import { accountOrders, accountRequest, keyChange, newAccount } from "./accounts.ts";
import type { AcmeContext, AcmeDirectory } from "./context.ts";
import { certificateRequest, finalize } from "./finalize.ts";
import { MAX_JWS_BYTES } from "./jws.ts";
import { newNonce } from "./nonces.ts";
import { authorizationRequest, challengeRequest, newOrder, orderRequest } from "./orders.ts";
import { AcmeProblem } from "./problem.ts";
import { renewalInfo } from "./renewal-info.ts";
import { storedReplyNonce } from "./signed-request.ts";
import { revokeCert } from "./revocation.ts";
import { AcmeUrls } from "./urls.ts";
import { ValidationRunner } from "./validation-runner.ts";

/**
 * The ACME server (RFC 8555): one directory per ACME profile. Resources are
 * walked in the RFC's order: directory, nonce, account, order,
 * authorization, challenge, finalize, certificate, revocation, plus
 * renewal information (RFC 9773).
 */
export function acmeRoutes(ctx: AcmeContext): { app: Hono; runner: ValidationRunner } {
  const app = new Hono();
  const runner = new ValidationRunner(ctx);
  // Longest base path first, so /acme/<name>/... is not taken for the default's.
  const dirs = [...ctx.directories.values()].sort((a, b) => b.basePath.length - a.basePath.length);
  for (const dir of dirs) mountDirectory(app, ctx, dir, runner);
  return { app, runner };
}

function mountDirectory(app: Hono, ctx: AcmeContext, dir: AcmeDirectory, runner: ValidationRunner): void {
  const base = dir.basePath;
  const urlsOf = (c: Context) => new AcmeUrls(ctx.publicUrl ?? new URL(c.req.url).origin, base);
  const limit = readBodyWithin(MAX_JWS_BYTES, (c) => {
    // The unread body makes the connection unusable: tell the client not to reuse it.
    c.header("connection", "close");
    throw new AcmeProblem("malformed", `the request body exceeds ${MAX_JWS_BYTES} bytes`, { status: 413 });
  });

  // Every response, errors included, carries a fresh nonce and the directory link (§6.5, §7.1).
  app.use(`${base}/*`, async (c, next) => {
    await next();
    // A signed request stored its response's nonce already, with the one it used.
    c.res.headers.set("replay-nonce", storedReplyNonce(c) ?? (await newNonce(ctx.db, ctx.now())));
    c.res.headers.set("cache-control", "no-store");
    c.res.headers.append("link", `<${urlsOf(c).directory()}>;rel="index"`);
  });

  app.get(`${base}/directory`, (c) => {
    const u = urlsOf(c);
    return c.json({
      newNonce: u.newNonce(),
      newAccount: u.newAccount(),
      newOrder: u.newOrder(),
      revokeCert: u.revokeCert(),
      keyChange: u.keyChange(),
      renewalInfo: u.renewalInfo(),
      meta: {
        externalAccountRequired: dir.profile.externalAccountRequired,
        ...(dir.profile.termsOfService ? { termsOfService: dir.profile.termsOfService } : {}),
        ...(dir.profile.description ? { description: dir.profile.description } : {}),
      },
    });
  });
  // HEAD reaches the GET handler in Hono: 200 for HEAD, 204 for GET (§7.2).
  app.get(`${base}/new-nonce`, (c) => c.body(null, c.req.method === "HEAD" ? 200 : 204));
  app.get(`${base}/renewal-info/:certId`, (c) => renewalInfo(c, ctx, c.req.param("certId")));
  for (const path of ["/directory", "/new-nonce", "/renewal-info/:certId"]) allowOnly(app, `${base}${path}`, ["GET", "HEAD"]);

  const post = (path: string, handler: (c: Context, urls: AcmeUrls) => Promise<Response>) => {
    app.post(`${base}${path}`, limit, (c) => handler(c, urlsOf(c)));
    allowOnly(app, `${base}${path}`, ["POST"]);
  };
  post("/new-account", (c, u) => newAccount(c, ctx, dir, u));
  post("/acct/:id", (c, u) => accountRequest(c, ctx, dir, u, c.req.param("id")!));
  post("/acct/:id/orders", (c, u) => accountOrders(c, ctx, dir, u, c.req.param("id")!, (id) => orderIdsOfAccount(ctx.db, id)));
  post("/key-change", (c, u) => keyChange(c, ctx, dir, u));
  post("/new-order", (c, u) => newOrder(c, ctx, dir, u));
  post("/order/:id", (c, u) => orderRequest(c, ctx, dir, u, c.req.param("id")!));
  post("/order/:id/finalize", (c, u) => finalize(c, ctx, dir, u, c.req.param("id")!));
  post("/authz/:id", (c, u) => authorizationRequest(c, ctx, dir, u, c.req.param("id")!));
  post("/chall/:id", (c, u) => challengeRequest(c, ctx, dir, u, c.req.param("id")!, runner));
  post("/cert/:serial", (c, u) => certificateRequest(c, ctx, dir, u, c.req.param("serial")!));
  post("/cert/:serial/:alternate", (c, u) => certificateRequest(c, ctx, dir, u, c.req.param("serial")!, c.req.param("alternate")!));
  post("/revoke-cert", (c, u) => revokeCert(c, ctx, dir, u));
}

/**
 * RFC 8555 §6.3: a resource that exists answers any method it does not take
 * with 405 and an Allow header, not 404, so that a client sending GET where
 * POST-as-GET is required learns what to do. Registered after the resource's
 * own handlers, which answer first for the methods it takes.
 */
function allowOnly(app: Hono, path: string, allowed: string[]): void {
  app.all(path, (c) => {
    const hint = allowed.includes("POST") && (c.req.method === "GET" || c.req.method === "HEAD") ? "; fetch it with POST-as-GET (a JWS with an empty payload)" : "";
    const problem = new AcmeProblem("malformed", `${c.req.method} is not allowed here; allowed: ${allowed.join(", ")}${hint}`, { status: 405 });
    return c.body(JSON.stringify(problem.toDocument()), 405, { "content-type": "application/problem+json", allow: allowed.join(", ") });
  });
}
