import { Hono, type Context, type Next } from "hono";
import { readBodyWithin } from "../http/request-body.ts";
import { HTTPException } from "hono/http-exception";
import { actorFor } from "../audit/actor.ts";
import type { Principal } from "../auth/api-tokens.ts";
import { Rejection } from "../errors.ts";
import { CRL_REASONS } from "../revocation/reasons.ts";
import { revoke } from "../revocation/revoke.ts";
import { certificateBySerial, listCertificates, type CertificateRow } from "../store/certificates.ts";
import { clientTokenExpiry, loginAppRole } from "./approles.ts";
import { adminOnly, anyRole, issuerOrAdmin, requireVaultToken, tokenOf } from "./auth.ts";
import { caChainPems, crlPem, currentCrlDer, derOfPem, issuingCaPem } from "./ca-material.ts";
import type { VaultContext, VaultEnv } from "./context.ts";
import { VaultError, vaultErrorOf, vaultErrorResponse } from "./errors.ts";
import { secretResponse } from "./response.ts";
import { storedSerial, vaultSerial } from "./serial.ts";
import { intermediateProfile, profileOfRole } from "./roles.ts";
import { issueForVault, jsonBody, readSignRequest } from "./sign.ts";

type Handler = (c: Context<VaultEnv>, next: Next) => Response | void | Promise<Response | void>;

/** Vault answers up to 32 MiB; a CSR needs far less. As REST: 64 KiB. */
const MAX_BODY_BYTES = 64 * 1024;
/** Serials a LIST answers with at most: Vault pages nothing either, but a CA here may hold millions. */
const MAX_LISTED = 10_000;
/** Stands for Vault's API level in sys/health's version (some clients compare it), with hsm-ca's own after the '+'. */
const VERSION = "1.15.0+hsm-ca";

/**
 * The part of HashiCorp Vault's HTTP API that tools use with a PKI secrets
 * engine (docs/vault-compatibility.md), under /v1 on the HTTPS listener:
 * sys/health, AppRole login, and the mount's sign, sign-verbatim, revoke,
 * CA, CRL and certificate paths. Issuance and revocation are REST's own
 * (src/issuance, src/revocation); only the words are Vault's.
 */
export function vaultRoutes(ctx: VaultContext): Hono<VaultEnv> {
  const app = new Hono<VaultEnv>();
  const m = `/${ctx.settings.mount}`;
  const WRITE = ["POST", "PUT"];
  const READ = ["GET", "HEAD"];
  const LIST = ["LIST", "GET"];
  /** Every path answers its methods; any other method is 405, as Vault says it. */
  const paths: Array<{ path: string; methods: string[] }> = [];
  const on = (methods: string[], path: string, ...handlers: Handler[]) => {
    paths.push({ path, methods });
    (app.on as unknown as (methods: string[], path: string, ...h: Handler[]) => void)(methods, path, ...handlers);
  };
  const limit = readBodyWithin(MAX_BODY_BYTES, () => {
    throw new VaultError(400, `the request body is larger than ${MAX_BODY_BYTES} bytes`);
  });

  on(READ, "/sys/health", async (c) => {
    const ready = await ctx.ready();
    const code = (name: string, fallback: number) => {
      const v = Number(c.req.query(name));
      return Number.isInteger(v) && v >= 200 && v <= 599 ? v : fallback;
    };
    const status = ready.ok ? code("activecode", 200) : code("sealedcode", 503);
    const body = {
      initialized: true,
      // Vault's word for "cannot serve now": the HSM or the database is down, or the service is stopping.
      sealed: !ready.ok,
      standby: false,
      performance_standby: false,
      replication_performance_mode: "disabled",
      replication_dr_mode: "disabled",
      server_time_utc: Math.floor(ctx.now().getTime() / 1000),
      version: VERSION,
      cluster_name: "hsm-ca",
      ...(ready.ok ? {} : { detail: ready.detail }),
    };
    if (c.req.method === "HEAD") return c.body(null, status as 200);
    return c.json(body, status as 200);
  });

  on(WRITE, "/auth/approle/login", limit, async (c) => {
    const body = await jsonBody(c);
    const roleId = typeof body.role_id === "string" ? body.role_id : "";
    const secretId = typeof body.secret_id === "string" ? body.secret_id : "";
    if (!roleId) throw new VaultError(400, "missing role_id");
    const login = roleId.length <= 100 && secretId.length <= 200 ? await loginAppRole(ctx.db, roleId, secretId, ctx.now()) : undefined;
    if (!login) {
      // Counted with the other authentication failures of this address (and refused while it is over their limit).
      await ctx.authenticateApiToken(c, undefined, "AppRole login with an unknown role_id or a wrong secret_id");
      throw new VaultError(400, "invalid role_id or secret_id");
    }
    ctx.audit?.record({
      kind: "vault.approle.login",
      actor: actorFor(`approle:${login.appRole.id}`),
      subject: login.appRole.id,
      details: { name: login.appRole.name, accessor: login.accessor, lease_seconds: login.leaseSeconds },
    });
    const policies = ["default"];
    return c.json(
      secretResponse(c, null, [], {
        client_token: login.clientToken,
        accessor: login.accessor,
        policies,
        token_policies: policies,
        metadata: { role_name: login.appRole.name, profiles: login.appRole.profiles.join(",") },
        lease_duration: login.leaseSeconds,
        renewable: false,
        entity_id: "",
        token_type: "service",
        orphan: true,
        num_uses: 0,
      }),
    );
  });

  // What a client learns of its own token (SPIRE's token_auth reads it first): API tokens never expire (ttl 0), client tokens do.
  on(READ, "/auth/token/lookup-self", requireVaultToken(ctx, anyRole), async (c) => {
    const secret = tokenOf(c)!;
    const p = c.get("principal");
    const now = ctx.now();
    const expires = await clientTokenExpiry(ctx.db, secret, now);
    const ttl = expires ? Math.max(0, Math.floor((expires.getTime() - now.getTime()) / 1000)) : 0;
    return c.json(
      secretResponse(c, {
        id: secret,
        accessor: /^hsmcav?_([0-9a-f]+)_/.exec(secret)?.[1] ?? "",
        display_name: p.tokenId,
        policies: ["default"],
        meta: { role: p.role, profiles: p.profiles.join(",") },
        ttl,
        creation_ttl: ttl,
        expire_time: expires ? expires.toISOString() : null,
        renewable: false,
        orphan: true,
        num_uses: 0,
        type: "service",
        entity_id: "",
        path: expires ? "auth/approle/login" : "auth/token/create",
      }),
    );
  });

  on(WRITE, `${m}/sign/:role`, limit, requireVaultToken(ctx, issuerOrAdmin), async (c) => {
    const role = c.req.param("role") ?? "";
    const profile = profileOfRole(ctx, role);
    const input = readSignRequest(await jsonBody(c), { verbatim: false });
    return issueForVault(ctx, c, { profile, role, input, principal: c.get("principal"), kind: "end-entity" });
  });

  const signVerbatim = async (c: Context<VaultEnv>) => {
    const role = c.req.param("role");
    if (!role) throw new VaultError(400, `name a role: ${m}/sign-verbatim/<role>; hsm-ca signs every certificate through a profile`);
    const profile = profileOfRole(ctx, role);
    const input = readSignRequest(await jsonBody(c), { verbatim: true });
    return issueForVault(ctx, c, { profile, role, input, principal: c.get("principal"), kind: "end-entity" });
  };
  on(WRITE, `${m}/sign-verbatim`, limit, requireVaultToken(ctx, adminOnly), signVerbatim);
  on(WRITE, `${m}/sign-verbatim/:role`, limit, requireVaultToken(ctx, adminOnly), signVerbatim);

  // A sub-CA (SPIRE's UpstreamAuthority "vault", a mesh's issuer), through the CA profile: its path length, key usages and name constraints, its approvals.
  on(WRITE, `${m}/root/sign-intermediate`, limit, requireVaultToken(ctx, issuerOrAdmin), async (c) => {
    const profile = intermediateProfile(ctx);
    const body = await jsonBody(c);
    const ignored = ["max_path_length", "permitted_dns_domains", "use_csr_values"].filter((f) => body[f] !== undefined && body[f] !== "" && body[f] !== null);
    const input = readSignRequest(body, { verbatim: false, ca: true });
    if (ignored.length) input.warnings.push(`ignored ${ignored.join(", ")}: the CA profile ${profile} sets path length and name constraints`);
    return issueForVault(ctx, c, { profile, role: null, input, principal: c.get("principal"), kind: "ca" });
  });

  on(WRITE, `${m}/issue/:role`, () => {
    throw new VaultError(400, `hsm-ca never generates or sees end-entity private keys, so ${m}/issue/<role> is not offered: make the key yourself and send its CSR to ${m}/sign/<role>`);
  });

  // CA material, without a token (Vault serves these unauthenticated too).
  const pemHeaders = { "content-type": "application/pem-certificate-chain" };
  on(READ, `${m}/ca`, (c) => c.body(derOfPem(issuingCaPem(ctx)), 200, { "content-type": "application/pkix-cert" }));
  on(READ, `${m}/ca/pem`, (c) => c.body(issuingCaPem(ctx).trim(), 200, pemHeaders));
  on(READ, `${m}/ca_chain`, (c) => c.body(caChainPems(ctx).join(""), 200, pemHeaders));
  on(READ, `${m}/cert/ca`, (c) => c.json(secretResponse(c, certData(issuingCaPem(ctx)))));
  on(READ, `${m}/cert/ca_chain`, (c) => c.json(secretResponse(c, { ...certData(caChainPems(ctx).join("")), ca_chain: caChainPems(ctx).map((p) => p.trim()) })));
  on(READ, `${m}/crl`, async (c) => c.body(await currentCrlDer(ctx), 200, { "content-type": "application/pkix-crl" }));
  on(READ, `${m}/crl/pem`, async (c) => c.body(crlPem(await currentCrlDer(ctx)), 200, { "content-type": "application/x-pem-file" }));
  on(READ, `${m}/cert/crl`, async (c) => c.json(secretResponse(c, certData(crlPem(await currentCrlDer(ctx))))));

  // A certificate: with a token, in the token's scope, as REST reads it (an issuer token sees its own only).
  const ownCertificate = async (c: Context<VaultEnv>): Promise<CertificateRow> => {
    const text = c.req.param("serial") ?? "";
    const serial = storedSerial(text);
    const row = serial ? await certificateBySerial(ctx.db, serial) : undefined;
    if (!row || !inScope(c.get("principal"), row)) {
      const among = c.get("principal").role === "issuer" ? " among those this token requested" : "";
      throw new VaultError(404, `no certificate with serial ${text.slice(0, 80)}${among}`);
    }
    return row;
  };
  on(READ, `${m}/cert/:serial`, requireVaultToken(ctx, anyRole), async (c) => c.json(secretResponse(c, certificateData(await ownCertificate(c)))));
  on(READ, `${m}/cert/:serial/raw`, requireVaultToken(ctx, anyRole), async (c) =>
    c.body(derOfPem((await ownCertificate(c)).certificatePem), 200, { "content-type": "application/pkix-cert" }),
  );
  on(READ, `${m}/cert/:serial/raw/pem`, requireVaultToken(ctx, anyRole), async (c) => c.body((await ownCertificate(c)).certificatePem, 200, pemHeaders));

  const listSerials = (status?: "revoked") => async (c: Context<VaultEnv>) => {
    if (c.req.method === "GET" && !["true", "1", "t", "T", "TRUE", "True"].includes(c.req.query("list") ?? "")) throw new VaultError(405, `${c.req.path} is listed: send LIST, or GET with ?list=true`);
    const p = c.get("principal");
    const keys: string[] = [];
    let afterId: number | undefined;
    for (;;) {
      const rows = await listCertificates(ctx.db, {
        status,
        afterId,
        limit: 1000,
        ...(p.role === "issuer" ? { requestedBy: p.tokenId, profiles: p.profiles } : {}),
      });
      keys.push(...rows.map((r) => vaultSerial(r.serial)));
      if (rows.length < 1000 || keys.length >= MAX_LISTED) break;
      afterId = rows.at(-1)!.id;
    }
    // Vault answers an empty list with 404, and its clients expect that.
    if (!keys.length) return c.json({ errors: [] }, 404);
    const warnings = keys.length >= MAX_LISTED ? [`only the first ${MAX_LISTED} serials are listed; GET /api/v1/certificates pages through all`] : [];
    return c.json(secretResponse(c, { keys: keys.slice(0, MAX_LISTED) }, warnings));
  };
  on(LIST, `${m}/certs`, requireVaultToken(ctx, anyRole), listSerials());
  on(LIST, `${m}/certs/revoked`, requireVaultToken(ctx, anyRole), listSerials("revoked"));

  on(WRITE, `${m}/revoke`, limit, requireVaultToken(ctx, issuerOrAdmin), async (c) => {
    const body = await jsonBody(c);
    const given = typeof body.serial_number === "string" ? body.serial_number : undefined;
    if (!given) throw new VaultError(400, "missing serial_number");
    const serial = storedSerial(given);
    const row = serial ? await certificateBySerial(ctx.db, serial) : undefined;
    const principal = c.get("principal");
    // Checked before anything changes: another tenant's certificate is neither revoked nor named.
    if (!row || !inScope(principal, row)) {
      throw new VaultError(400, `no certificate with serial ${given.slice(0, 80)}${principal.role === "issuer" ? " among those this token requested" : ""}`);
    }
    const outcome = await revoke(
      { db: ctx.db, now: ctx.now, audit: ctx.audit, metrics: ctx.metrics },
      { serial: row.serial, reason: CRL_REASONS.unspecified, by: principal.tokenId },
    );
    ctx.log.info({ serial: row.serial, path: c.req.path, tokenId: principal.tokenId, alreadyRevoked: outcome.alreadyRevoked }, "certificate revoked through the Vault API");
    const at = outcome.row.revokedAt!;
    return c.json(secretResponse(c, { revocation_time: Math.floor(at.getTime() / 1000), revocation_time_rfc3339: at.toISOString(), state: "revoked" }));
  });

  // A known path with a method it does not take: 405; anything else under /v1: 404, both in Vault's form.
  app.all("*", (c) => {
    const known = paths.find((p) => matches(p.path, c.req.path.replace(/^\/v1/, "")));
    if (known) throw new VaultError(405, `unsupported operation: ${c.req.method} ${c.req.path} (it takes ${[...new Set(known.methods)].join(", ")})`);
    throw new VaultError(404, `no handler for route "${c.req.path.replace(/^\/v1\//, "")}": hsm-ca speaks the Vault PKI API on mount "${ctx.settings.mount}" (see docs/vault-compatibility.md)`);
  });

  app.onError((err, c) => {
    if (err instanceof VaultError) {
      if (err.status >= 500) ctx.log.error({ route: c.req.path, err: err.message }, "Vault API request failed");
      return vaultErrorResponse(c, err);
    }
    if (err instanceof Rejection) {
      const v = vaultErrorOf(err);
      ctx.log[v.status >= 500 ? "error" : "info"]({ route: c.req.path, problem: err.kind, detail: err.detail }, "Vault API request refused");
      return vaultErrorResponse(c, v);
    }
    if (err instanceof HTTPException) return vaultErrorResponse(c, new VaultError(400, err.message));
    ctx.log.error({ err, route: c.req.path }, "Vault API request failed");
    return vaultErrorResponse(c, new VaultError(500, "an unexpected error occurred; it has been logged"));
  });
  return app;
}

function inScope(p: Principal, row: CertificateRow): boolean {
  return p.role !== "issuer" || (row.requestedBy === p.tokenId && p.profiles.includes(row.profile));
}

/** A Hono path pattern (":name" segments) against a path. */
function matches(pattern: string, path: string): boolean {
  const a = pattern.split("/");
  const b = path.split("/");
  return a.length === b.length && a.every((seg, i) => seg.startsWith(":") || seg === b[i]);
}

function certData(pem: string) {
  return { certificate: pem.trim(), revocation_time: 0, revocation_time_rfc3339: "" };
}

/** cert/<serial> as Vault answers it. */
function certificateData(row: CertificateRow) {
  return {
    certificate: row.certificatePem.trim(),
    serial_number: vaultSerial(row.serial),
    revocation_time: row.revokedAt ? Math.floor(row.revokedAt.getTime() / 1000) : 0,
    revocation_time_rfc3339: row.revokedAt ? row.revokedAt.toISOString() : "",
    expiration: Math.floor(row.notAfter.getTime() / 1000),
  };
}
