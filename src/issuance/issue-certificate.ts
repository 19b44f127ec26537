import { actorFor, withActor } from "../audit/actor.ts";
import type { AuditEntry } from "../audit/audit-log.ts";
import * as x509 from "@peculiar/x509";
import { pathLengthOf } from "../ca/ca-certificate.ts";
import { buildLeafCertificate } from "../ca/leaf-certificate.ts";
import { buildSubCaCertificate } from "../ca/sub-ca-certificate.ts";
import { parseCsr, type ParsedCsr } from "../csr/parse-csr.ts";
import { sha256Hex } from "../ca/fingerprint.ts";
import { newSerial } from "../ca/serial.ts";
import { Rejection } from "../errors.ts";
import { decide } from "../policy/decide.ts";
import type { IssuerPathLengths } from "../policy/ca-profile.ts";
import { isCaProfile, type Profile } from "../policy/profile-schema.ts";
import { insertCertificate, type CertificateRow } from "../store/certificates.ts";
import type { Database } from "../store/database.ts";
import { databaseErrorText, isUniqueViolation } from "../store/errors.ts";
import { isKeyBlocked } from "../store/blocked-keys.ts";
import { crlPartitionOf, pointersFor, type RevocationPublishing } from "../revocation/pointers.ts";
import type { ActiveIssuer } from "./issuer.ts";
import { lintContextFor } from "./lint-context.ts";

export interface IssueRequest {
  csrPem: string;
  /** csrPem already parsed (and its signature checked) by the door, which read it first; unset: parsed here. */
  parsedCsr?: ParsedCsr;
  profile: string;
  validity?: string;
  /** API token id (or later ACME account) that asked, for the record. */
  requestedBy?: string;
  /**
   * The approval request that was approved (src/approvals): profiles with
   * `approvals.required` issue only through it, never directly.
   */
  approvedRequest?: string;
  /**
   * The kind of certificate the door asks for: refused when the profile
   * issues the other kind. ACME asks for end-entity certificates only; the
   * cert-manager issuer says what the CertificateRequest's isCA says.
   * Unset: whatever the profile issues.
   */
  kind?: CertificateKind;
  /** The door's own words for the audit entry (the Vault API: its path and role); unset: none. */
  via?: Record<string, unknown>;
}

export type CertificateKind = "ca" | "end-entity";

export interface IssueContext {
  db: Database;
  profiles: ReadonlyMap<string, Profile>;
  issuer: ActiveIssuer;
  /** Where certificates point relying parties for CRLs and OCSP; absent: no such pointers. */
  revocation?: RevocationPublishing;
  /** Records certificate.issue; unset: not recorded. */
  audit?: { record(entry: AuditEntry): void | Promise<void> };
}

/**
 * Everything issuance checks before it signs: the profile, the CSR and its
 * signature, a blocked key, the profile's rules. A request that passes
 * may wait for approval; it is checked again when it is issued.
 */
export async function checkIssueRequest(ctx: Pick<IssueContext, "db" | "profiles" | "issuer">, req: IssueRequest) {
  const profile = ctx.profiles.get(req.profile);
  if (!profile) {
    throw new Rejection("unknown-profile", `no profile "${req.profile}"; known: ${[...ctx.profiles.keys()].join(", ")}`);
  }
  const isCa = isCaProfile(profile);
  if (req.kind && req.kind !== (isCa ? "ca" : "end-entity")) {
    throw new Rejection(
      "wrong-profile-kind",
      isCa
        ? `profile ${profile.name} issues CA certificates, and this request is for an end-entity certificate`
        : `profile ${profile.name} issues end-entity certificates, and this request is for a CA certificate: name a CA profile`,
    );
  }
  const csr = req.parsedCsr ?? (await parseCsr(req.csrPem));
  const spkiSha256 = sha256Hex(csr.spki);
  if (await isKeyBlocked(ctx.db, spkiSha256)) {
    throw new Rejection("key-compromised", "this public key was revoked for key compromise and is never certified again: make a new key");
  }
  const decision = decide({
    profile,
    csr,
    validity: req.validity,
    issuerNotAfter: ctx.issuer.certificate.notAfter,
    issuerNotBefore: ctx.issuer.certificate.notBefore,
    issuerPathLengths: isCa ? issuerPathLengths(ctx.issuer) : undefined,
  });
  return { profile, csr, spkiSha256, decision };
}

const pathLengths = new WeakMap<ActiveIssuer, IssuerPathLengths>();

/**
 * The pathLen of the active intermediate and of its root: what a CA
 * profile's certificate must fit under. Read once per issuer (parsing the
 * root each time cost 2 ms a sub-CA certificate).
 */
function issuerPathLengths(issuer: ActiveIssuer): IssuerPathLengths {
  let lengths = pathLengths.get(issuer);
  if (!lengths) {
    lengths = { intermediate: pathLengthOf(issuer.certificate) ?? null, root: pathLengthOf(new x509.X509Certificate(issuer.rootPem)) ?? null };
    pathLengths.set(issuer, lengths);
  }
  return lengths;
}

/** A serial collision at 127 bits means a broken RNG; a few retries, then give up loudly. */
const SERIAL_ATTEMPTS = 3;

/**
 * CSR in, stored certificate out. The certificate is returned only after
 * the database holds it: one that the database does not know never leaves.
 */
export async function issueCertificate(ctx: IssueContext, req: IssueRequest): Promise<CertificateRow> {
  const { profile, csr, spkiSha256, decision } = await checkIssueRequest(ctx, req);
  if (profile.approvals.required > 0 && !req.approvedRequest) {
    // Every door (REST, CLI, ACME) must go through src/approvals for such a profile.
    throw new Rejection("approval-required", `profile ${profile.name} issues only after ${profile.approvals.required} admins approve`);
  }
  for (let attempt = 1; ; attempt++) {
    const serial = newSerial();
    const partition = ctx.revocation ? crlPartitionOf(serial, ctx.revocation.partitions) : null;
    // The HSM's key-use event names whoever asked.
    const input = {
      spki: csr.spki,
      serial,
      issuer: ctx.issuer.certificate,
      signer: ctx.issuer.signer,
      algorithm: ctx.issuer.algorithm,
      revocation: ctx.revocation && pointersFor(ctx.revocation.urls, ctx.issuer.row.id, partition),
      lint: lintContextFor(ctx.issuer, profile),
    };
    // A sub-CA is stored and revoked like any certificate its issuer signs: the issuer's CRL and OCSP cover it.
    const { ca } = decision;
    const cert = await withActor(actorFor(req.requestedBy), () =>
      ca ? buildSubCaCertificate({ ...input, decision: { ...decision, ca } }) : buildLeafCertificate({ ...input, decision }),
    );
    const fingerprintSha256 = sha256Hex(cert.der);
    try {
      const row = await insertCertificate(ctx.db, {
        serial,
        issuerId: ctx.issuer.row.id,
        profile: profile.name,
        subject: cert.subject,
        sans: decision.sans.map((s) => `${s.type}:${s.value}`),
        notBefore: cert.notBefore,
        notAfter: cert.notAfter,
        certificatePem: cert.pem,
        fingerprintSha256,
        spkiSha256,
        requestedBy: req.requestedBy ?? null,
        crlPartition: partition,
      });
      ctx.audit?.record({
        kind: "certificate.issue",
        actor: actorFor(req.requestedBy),
        subject: row.serial,
        details: {
          serial: row.serial,
          profile: row.profile,
          requested_by: row.requestedBy,
          approved_request: req.approvedRequest,
          via: req.via,
          issuer_id: row.issuerId,
          subject: row.subject,
          sans: row.sans,
          ...(decision.ca ? { ca: true, path_length: decision.ca.pathLength } : {}),
          not_after: row.notAfter,
          fingerprint_sha256: row.fingerprintSha256,
        },
      });
      return row;
    } catch (err) {
      const retried = isUniqueViolation(err) && attempt < SERIAL_ATTEMPTS;
      // The HSM has signed (and hsm.sign says ok): the log must say this certificate never left.
      ctx.audit?.record({
        kind: "certificate.not-issued",
        actor: actorFor(req.requestedBy),
        subject: serial,
        result: "error",
        details: {
          serial,
          profile: profile.name,
          requested_by: req.requestedBy ?? null,
          approved_request: req.approvedRequest,
          issuer_id: ctx.issuer.row.id,
          fingerprint_sha256: fingerprintSha256,
          reason: `the signed certificate could not be stored: ${databaseErrorText(err)}`,
          retried_with_new_serial: retried,
        },
      });
      if (!retried) throw err;
    }
  }
}
