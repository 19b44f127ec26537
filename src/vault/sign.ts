import net from "node:net";
import * as x509 from "@peculiar/x509";
import type { Context } from "hono";
import { mayIssue, type Principal } from "../auth/api-tokens.ts";
import { parseCsr, type ParsedCsr } from "../csr/parse-csr.ts";
import { issueCertificate } from "../issuance/issue-certificate.ts";
import type { ActiveIssuer } from "../issuance/issuer.ts";
import type { CertificateKind } from "../issuance/issue-certificate.ts";
import { Rejection } from "../errors.ts";
import { countIssuance } from "../metrics/issuance-outcome.ts";
import { canonicalIp } from "../policy/acme-identifiers.ts";
import type { CertificateRow } from "../store/certificates.ts";
import type { VaultContext } from "./context.ts";
import { VaultError } from "./errors.ts";
import { secretResponse } from "./response.ts";
import { vaultSerial } from "./serial.ts";
import { requestText } from "../http/request-body.ts";
import { validityOfTtl } from "./ttl.ts";

/** The fields of sign/<role> and sign-verbatim that hsm-ca reads; any other is ignored with a warning, as Vault does. */
const KNOWN_FIELDS = new Set([
  "csr",
  "common_name",
  "alt_names",
  "ip_sans",
  "uri_sans",
  "other_sans",
  "ttl",
  "format",
  "exclude_cn_from_sans",
  "remove_roots_from_chain",
  "private_key_format",
  // SPIRE's sign-intermediate sends the CSR's subject again; the subject comes from the CSR here.
  "organization",
  "country",
  // root/sign-intermediate: the CA profile sets these (path length, name constraints), not the request.
  "max_path_length",
  "permitted_dns_domains",
  "use_csr_values",
]);

type Format = "pem" | "der" | "pem_bundle";

/** The JSON body as an object; Vault answers 400 to anything else. */
export async function jsonBody(c: Context): Promise<Record<string, unknown>> {
  const text = await requestText(c);
  if (text.trim() === "") return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new VaultError(400, "failed to parse JSON input: the body is not JSON");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new VaultError(400, "failed to parse JSON input: expected a JSON object");
  return body as Record<string, unknown>;
}

/** Vault's comma-string-slice: "a,b" or ["a","b"]. */
function commaList(body: Record<string, unknown>, field: string): string[] {
  const v = body[field];
  if (v === undefined || v === null || v === "") return [];
  if (typeof v === "string") return v.split(",").map((s) => s.trim()).filter(Boolean);
  if (Array.isArray(v) && v.every((s) => typeof s === "string")) return v.map((s) => s.trim()).filter(Boolean);
  throw new VaultError(400, `${field} must be a comma-separated string or a list of strings`);
}

function bool(body: Record<string, unknown>, field: string): boolean {
  const v = body[field];
  if (v === undefined || v === null || v === "") return false;
  if (typeof v === "boolean") return v;
  if (v === "true" || v === "1" || v === 1) return true;
  if (v === "false" || v === "0" || v === 0) return false;
  throw new VaultError(400, `${field} must be true or false`);
}

function string(body: Record<string, unknown>, field: string): string | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new VaultError(400, `${field} must be a string`);
  return v;
}

export interface SignInput {
  csrPem: string;
  validity?: string;
  format: Format;
  removeRoots: boolean;
  warnings: string[];
  /** The request's fields against the CSR's names; throws a Rejection (the request's fault). */
  checkCsr(csr: ParsedCsr): void;
}

/**
 * What sign/<role> asks for, checked against the CSR. hsm-ca certifies the
 * names in the CSR as the profile allows (it adds none), so common_name,
 * alt_names, ip_sans and uri_sans may only name what the CSR carries:
 * cert-manager sends exactly the CSR's names. `verbatim`: sign-verbatim,
 * where Vault takes the names from the CSR alone.
 */
export function readSignRequest(body: Record<string, unknown>, opts: { verbatim: boolean; ca?: boolean }): SignInput {
  const warnings: string[] = [];
  const csrPem = string(body, "csr");
  if (!csrPem || !csrPem.trim()) throw new VaultError(400, "missing csr: send the PEM-encoded CSR in csr (hsm-ca never makes end-entity keys)");
  if (commaList(body, "other_sans").length) {
    throw new VaultError(400, "other_sans is not supported: hsm-ca certifies DNS, IP, URI and email names from the CSR, no otherName");
  }
  const format = (string(body, "format") ?? "pem") as Format;
  if (!["pem", "der", "pem_bundle"].includes(format)) throw new VaultError(400, `unknown format "${format}": use pem, der or pem_bundle`);
  const validity = validityOfTtl(body.ttl);
  if (validity === undefined) throw new VaultError(400, `ttl "${String(body.ttl)}" is not a duration: use seconds (3600) or a duration like "720h"`);
  const unknown = Object.keys(body).filter((k) => !KNOWN_FIELDS.has(k)).sort();
  if (unknown.length) warnings.push(`Endpoint ignored these unrecognized parameters: [${unknown.join(" ")}]`);
  return {
    csrPem,
    validity: validity ?? undefined,
    format,
    removeRoots: bool(body, "remove_roots_from_chain"),
    warnings,
    // Checked with the CSR, inside the counted issuance: a refusal is counted as REST counts its own.
    checkCsr: opts.verbatim ? () => {} : (csr) => checkNamesInCsr(body, csr, opts.ca ? [] : warnings),
  };
}

/** `warnings`: where a CN missing from the SANs is noted (not for a CA: its CN names it, its SANs are its own identity). */
function checkNamesInCsr(body: Record<string, unknown>, csr: ParsedCsr, warnings: string[]): void {
  const cn = csr.subject.field("CN")[0];
  const inCsr = new Set<string>();
  for (const san of csr.sans) {
    if (san.type === "dns" || san.type === "email") inCsr.add(`${san.type}:${san.value.toLowerCase()}`);
    else if (san.type === "ip" && net.isIP(san.value)) inCsr.add(`ip:${canonicalIp(san.value)}`);
    else if (san.type === "url") inCsr.add(`uri:${san.value}`);
  }
  const missing: string[] = [];
  const commonName = string(body, "common_name")?.trim();
  if (commonName && commonName !== cn && !inCsr.has(`dns:${commonName.toLowerCase()}`) && !inCsr.has(`email:${commonName.toLowerCase()}`)) {
    missing.push(`common_name ${commonName}`);
  }
  for (const name of commaList(body, "alt_names")) {
    const key = name.includes("@") ? `email:${name.toLowerCase()}` : `dns:${name.toLowerCase()}`;
    if (!inCsr.has(key)) missing.push(`alt_names ${name}`);
  }
  for (const ip of commaList(body, "ip_sans")) {
    if (!net.isIP(ip)) throw new Rejection("malformed-request", `ip_sans: "${ip}" is not an IP address`);
    if (!inCsr.has(`ip:${canonicalIp(ip)}`)) missing.push(`ip_sans ${ip}`);
  }
  for (const uri of commaList(body, "uri_sans")) if (!inCsr.has(`uri:${uri}`)) missing.push(`uri_sans ${uri}`);
  if (missing.length) {
    throw new Rejection("rejected-identifier", `hsm-ca certifies the names in the CSR and adds none; the CSR does not carry: ${missing.join(", ")}`);
  }
  if (cn && !bool(body, "exclude_cn_from_sans") && !inCsr.has(`dns:${cn.toLowerCase()}`) && !inCsr.has(`email:${cn.toLowerCase()}`) && csr.sans.length > 0) {
    warnings.push(`the common name ${cn} is not among the CSR's subject alternative names, and hsm-ca adds none: put it in the CSR to have it as a SAN`);
  }
}

/**
 * One issuance through the Vault door, the same as REST's: the token's
 * scope, the profile's policy, stored before it is returned, audited with
 * the Vault path and role, counted with source "vault".
 */
export async function issueForVault(
  ctx: VaultContext,
  c: Context,
  req: { profile: string; role: string | null; input: SignInput; principal: Principal; kind: CertificateKind },
): Promise<Response> {
  const { profile, role, input, principal, kind } = req;
  if (!mayIssue(principal, profile)) {
    const why = role === null ? `profile ${profile}` : `role ${role} (profile ${profile})`;
    throw new VaultError(403, `permission denied: this token may not issue from ${why}`);
  }
  const { issuer, row } = await countIssuance(ctx.metrics, "vault", profile, async () => {
    const parsedCsr = await parseCsr(input.csrPem);
    input.checkCsr(parsedCsr);
    const issuer = ctx.issuer();
    const row = await issueCertificate(
      { db: ctx.db, profiles: ctx.profiles, issuer, revocation: ctx.revocation, audit: ctx.audit },
      { csrPem: input.csrPem, parsedCsr, profile, validity: input.validity, kind, requestedBy: principal.tokenId, via: { door: "vault", path: c.req.path, role } },
    );
    return { issuer, row };
  });
  ctx.log.info({ serial: row.serial, profile, role, path: c.req.path, tokenId: principal.tokenId }, "certificate issued through the Vault API");
  return c.json(secretResponse(c, signedData(row, issuer, input), input.warnings));
}

/** data of a sign answer: the certificate, its issuer and the chain to the root, in the asked format. */
function signedData(row: CertificateRow, issuer: ActiveIssuer, input: SignInput) {
  const chain = [...splitPems(issuer.chainPem), ...(input.removeRoots ? [] : splitPems(issuer.rootPem))];
  const issuing = splitPems(issuer.chainPem)[0]!;
  const encode = (pem: string) => (input.format === "der" ? Buffer.from(new x509.X509Certificate(pem).rawData).toString("base64") : pem.trim());
  const certificate = input.format === "pem_bundle" ? [row.certificatePem.trim(), issuing.trim()].join("\n") : encode(row.certificatePem);
  return {
    certificate,
    issuing_ca: encode(issuing),
    ca_chain: chain.map(encode),
    serial_number: vaultSerial(row.serial),
    expiration: Math.floor(row.notAfter.getTime() / 1000),
  };
}

/** Each certificate of a PEM bundle, with one trailing newline. */
export function splitPems(bundle: string): string[] {
  return [...bundle.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)].map((m) => `${m[0]}\n`);
}
