import * as x509 from "@peculiar/x509";
import { derToPem } from "../asn1/pem.ts";
import { WHOLE_ISSUER } from "../revocation/urls.ts";
import { latestCrl } from "../store/crls.ts";
import type { VaultContext } from "./context.ts";
import { VaultError } from "./errors.ts";
import { splitPems } from "./sign.ts";

/**
 * The mount's CA is hsm-ca's active issuing CA (Vault's default issuer);
 * its chain runs up to the root. Served without a token, as Vault does.
 */
export function issuingCaPem(ctx: VaultContext): string {
  return splitPems(ctx.issuer().chainPem)[0]!;
}

/** The issuing CA, any CAs above it, and the root: PEM, one after another. */
export function caChainPems(ctx: VaultContext): string[] {
  const issuer = ctx.issuer();
  return [...splitPems(issuer.chainPem), ...splitPems(issuer.rootPem)];
}

export function derOfPem(pem: string): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new x509.X509Certificate(pem).rawData);
}

/** The issuing CA's latest full CRL over all its certificates (not a partition). */
export async function currentCrlDer(ctx: VaultContext): Promise<Uint8Array<ArrayBuffer>> {
  const crl = await latestCrl(ctx.db, ctx.issuer().row.id, WHOLE_ISSUER, "full");
  if (!crl) throw new VaultError(503, "no CRL is published yet for the issuing CA; try again shortly");
  return new Uint8Array(crl.der);
}

export const crlPem = (der: Uint8Array) => derToPem(der, "X509 CRL");
