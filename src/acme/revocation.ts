import * as x509 from "@peculiar/x509";
import type { Context } from "hono";
import { sha256Hex } from "../ca/fingerprint.ts";
import { accountHoldsAuthorizations } from "../store/acme-orders.ts";
import { SUBSCRIBER_REASONS } from "../revocation/reasons.ts";
import { revoke } from "../revocation/revoke.ts";
import { certificateBySerial } from "../store/certificates.ts";
import { payloadObject } from "./accounts.ts";
import type { AcmeContext, AcmeDirectory } from "./context.ts";
import { jwkFromSpki, sameKey } from "./jwk.ts";
import { AcmeProblem } from "./problem.ts";
import { readSignedRequest } from "./signed-request.ts";
import type { AcmeUrls } from "./urls.ts";

/** revokeCert (§7.6): by the ordering account, an account holding its names, or the certificate's own key. */
export async function revokeCert(c: Context, ctx: AcmeContext, dir: AcmeDirectory, urls: AcmeUrls): Promise<Response> {
  const req = await readSignedRequest(c, ctx, dir, urls, "either");
  const p = payloadObject(req.jws.payload);
  if (typeof p.certificate !== "string" || !/^[A-Za-z0-9_-]+$/.test(p.certificate)) {
    throw new AcmeProblem("malformed", "certificate must be the base64url DER of the certificate to revoke");
  }
  const reason = p.reason ?? 0;
  if (typeof reason !== "number" || !SUBSCRIBER_REASONS.includes(reason)) {
    throw new AcmeProblem("badRevocationReason", `reason must be one of ${SUBSCRIBER_REASONS.join(", ")} (RFC 5280 CRLReason)`);
  }
  const der = Buffer.from(p.certificate, "base64url");
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(der);
  } catch {
    throw new AcmeProblem("malformed", "certificate is not a DER X.509 certificate");
  }
  const row = await certificateBySerial(ctx.db, cert.serialNumber.toLowerCase().replace(/^(00)+(?=[0-9a-f]{2})/, ""));
  if (!row || row.fingerprintSha256 !== sha256Hex(der)) throw new AcmeProblem("malformed", "this CA did not issue that certificate", { status: 404 });

  if (req.account) {
    const sans = cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON() ?? [];
    const names = sans.map((n) => (n.type === "dns" && n.value.startsWith("*.") ? n.value.slice(2) : n.value));
    const owns = row.requestedBy === `acme:${req.account.id}`;
    if (!owns && !(await accountHoldsAuthorizations(ctx.db, req.account.id, names, ctx.now()))) {
      throw new AcmeProblem("unauthorized", "this account neither ordered the certificate nor holds authorizations for all its names");
    }
  } else if (!sameKey(req.jwk, jwkFromSpki(cert.publicKey.rawData))) {
    throw new AcmeProblem("unauthorized", "the request is signed neither by an account nor by the certificate's key");
  }
  const by = req.account ? `acme:${req.account.id}` : "acme:certificate-key";
  const outcome = await revoke(ctx, { serial: row.serial, reason, by });
  if (outcome.alreadyRevoked) throw new AcmeProblem("alreadyRevoked", "the certificate is already revoked");
  ctx.log.info({ serial: row.serial, reason, by }, "certificate revoked over ACME");
  return c.body(null, 200);
}
