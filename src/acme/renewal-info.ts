import * as x509 from "@peculiar/x509";
import type { Context } from "hono";
import { caById } from "../store/cas.ts";
import { certificateBySerial, type CertificateRow } from "../store/certificates.ts";
import { ordersReplacing } from "../store/acme-orders.ts";
import type { AcmeContext } from "./context.ts";
import { AcmeProblem } from "./problem.ts";

/** How often clients should ask again (RFC 9773 §4.3). */
const RETRY_AFTER_SECONDS = 6 * 3600;

/**
 * ACME Renewal Information (RFC 9773). A certificate's window is the middle of
 * its last third; a revoked certificate, or one whose issuer no longer
 * issues (rotated), gets a window in the past: renew now.
 */
export async function renewalInfo(c: Context, ctx: AcmeContext, certId: string): Promise<Response> {
  const cert = await certificateForCertId(ctx, certId);
  const now = ctx.now().getTime();
  const issuer = await caById(ctx.db, cert.issuerId);
  let start: number;
  let end: number;
  let explanation: string | undefined;
  if (cert.status === "revoked" || issuer?.status !== "active") {
    start = now - 2 * 3600_000;
    end = now - 3600_000;
    explanation = cert.status === "revoked" ? "the certificate was revoked" : "the certificate's issuing CA was rotated";
  } else {
    const life = cert.notAfter.getTime() - cert.notBefore.getTime();
    start = cert.notBefore.getTime() + (life * 2) / 3;
    end = cert.notBefore.getTime() + (life * 5) / 6;
  }
  c.header("retry-after", String(RETRY_AFTER_SECONDS));
  return c.json({
    suggestedWindow: { start: new Date(start).toISOString(), end: new Date(end).toISOString() },
    ...(explanation ? { explanation } : {}),
  });
}

/** An order's "replaces" (RFC 9773 §5): a certificate of this account, not replaced already. */
export async function checkReplaces(
  ctx: AcmeContext,
  accountId: string,
  replaces: unknown,
  identifiers: Array<{ type: string; value: string }>,
): Promise<string> {
  if (typeof replaces !== "string") throw new AcmeProblem("malformed", "replaces must be a certificate identifier string");
  const cert = await certificateForCertId(ctx, replaces);
  if (cert.requestedBy !== `acme:${accountId}`) throw new AcmeProblem("unauthorized", "replaces names a certificate this account did not order");
  // A replacement shares at least one identifier with what it replaces (RFC 9773 §5).
  const ordered = new Set(identifiers.map((i) => `${i.type}:${i.value}`));
  if (!cert.sans.some((san) => ordered.has(san))) {
    throw new AcmeProblem("malformed", "replaces names a certificate that shares no identifier with this order");
  }
  if ((await ordersReplacing(ctx.db, replaces)).some((o) => o.status !== "invalid")) {
    throw new AcmeProblem("alreadyReplaced", "another order already replaces this certificate");
  }
  return replaces;
}

/** base64url(AKI keyIdentifier) "." base64url(serial), RFC 9773 §4.1. */
export function certIdOf(pem: string): string {
  const cert = new x509.X509Certificate(pem);
  const aki = cert.getExtension(x509.AuthorityKeyIdentifierExtension);
  const serial = Buffer.from(cert.serialNumber.length % 2 ? "0" + cert.serialNumber : cert.serialNumber, "hex");
  return `${Buffer.from(aki!.keyId!, "hex").toString("base64url")}.${serial.toString("base64url")}`;
}

async function certificateForCertId(ctx: AcmeContext, certId: string): Promise<CertificateRow> {
  const m = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(certId);
  if (!m) throw new AcmeProblem("malformed", "a certificate identifier is base64url(AKI keyIdentifier).base64url(serial)");
  const keyId = Buffer.from(m[1]!, "base64url").toString("hex");
  const serial = Buffer.from(m[2]!, "base64url").toString("hex").replace(/^(00)+(?=[0-9a-f]{2})/, "");
  const cert = await certificateBySerial(ctx.db, serial);
  const aki = cert && new x509.X509Certificate(cert.certificatePem).getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId;
  if (!cert || aki?.toLowerCase() !== keyId) throw new AcmeProblem("malformed", `no certificate with identifier ${certId}`, { status: 404 });
  return cert;
}
