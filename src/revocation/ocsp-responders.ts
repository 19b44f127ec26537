import crypto from "node:crypto";
import * as x509 from "@peculiar/x509";
import type { Logger } from "pino";
import { buildOcspResponderCertificate } from "../ca/ocsp-responder-certificate.ts";
import type { OcspResponder } from "../ca/ocsp-response.ts";
import { newSerial } from "../ca/serial.ts";
import type { KeyManager } from "../hsm/key-manager.ts";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import type { CaRow } from "../store/cas.ts";
import type { Database } from "../store/database.ts";
import { activeResponder, replaceResponder, type OcspResponderRow } from "../store/ocsp.ts";

/** Responder keys are P-256: the cheapest signature, and responses are signed often. */
const RESPONDER_KEY: CaKeyAlgorithm = "ecdsa-p256";
const BACKDATE_MS = 60_000;

/**
 * Who signs OCSP responses for an issuer: by default a delegated responder
 * (key in the HSM, certificate from the issuer with id-kp-OCSPSigning and
 * ocsp-nocheck, short-lived, renewed when a third of its life is left);
 * with HSM_CA_OCSP_SIGNER=ca, the issuer's own key.
 */
export async function responderFor(
  deps: { db: Database; hsm: KeyManager; log: Logger; now(): Date },
  issuer: CaRow,
  settings: { mode: "delegated" | "ca"; lifetimeMs: number },
): Promise<{ responder: OcspResponder; notAfter: Date }> {
  const issuerCert = new x509.X509Certificate(issuer.certificatePem);
  if (settings.mode === "ca") {
    return {
      responder: { certificate: issuerCert, signer: deps.hsm.signer(issuer.keyLabel, issuer.keyAlgorithm as CaKeyAlgorithm), keyAlgorithm: issuer.keyAlgorithm as CaKeyAlgorithm, includeCertificate: false },
      notAfter: issuer.notAfter,
    };
  }
  let row = await activeResponder(deps.db, issuer.id);
  const now = deps.now().getTime();
  const due = (r: OcspResponderRow) => now >= r.notAfter.getTime() - (r.notAfter.getTime() - r.notBefore.getTime()) / 3 || !deps.hsm.hasKey(r.keyLabel);
  if (!row || due(row)) row = await issueResponder(deps, issuer, issuerCert, settings.lifetimeMs);
  return {
    responder: {
      certificate: new x509.X509Certificate(row.certificatePem),
      signer: deps.hsm.signer(row.keyLabel, row.keyAlgorithm as CaKeyAlgorithm),
      keyAlgorithm: row.keyAlgorithm as CaKeyAlgorithm,
      includeCertificate: true,
    },
    notAfter: row.notAfter,
  };
}

async function issueResponder(
  deps: { db: Database; hsm: KeyManager; log: Logger; now(): Date },
  issuer: CaRow,
  issuerCert: x509.X509Certificate,
  lifetimeMs: number,
): Promise<OcspResponderRow> {
  const label = `hsm-ca/ocsp/${issuer.id}/${deps.now().toISOString().slice(0, 10).replaceAll("-", "")}-${crypto.randomBytes(4).toString("hex")}`;
  // A token without EC (opencryptoki's soft token) gets an RSA responder key.
  const algorithm: CaKeyAlgorithm = deps.hsm.unsupportedReason(RESPONDER_KEY) ? "rsa-2048" : RESPONDER_KEY;
  const key = await deps.hsm.generateKey(label, algorithm);
  const now = deps.now().getTime();
  const cn = issuerCert.subjectName.getField("CN")[0] ?? "hsm-ca";
  const cert = await buildOcspResponderCertificate({
    subject: `CN=${cn} OCSP Responder`,
    spki: key.spki,
    serial: newSerial(),
    // Backdated, but never before its issuer (one an external root signed a moment ago).
    notBefore: new Date(Math.max(now - BACKDATE_MS, issuerCert.notBefore.getTime())),
    notAfter: new Date(Math.min(now + lifetimeMs, issuer.notAfter.getTime())),
    issuer: issuerCert,
    signer: deps.hsm.signer(issuer.keyLabel, issuer.keyAlgorithm as CaKeyAlgorithm),
  });
  const row = await replaceResponder(deps.db, {
    issuerId: issuer.id,
    keyLabel: label,
    keyAlgorithm: algorithm,
    certificatePem: cert.toString("pem").trim() + "\n",
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
  });
  deps.log.info({ issuer: issuer.id, keyLabel: label, notAfter: cert.notAfter.toISOString() }, "issued a delegated OCSP responder certificate");
  return row;
}
