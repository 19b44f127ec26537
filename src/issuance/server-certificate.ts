import crypto from "node:crypto";
import { buildLeafCertificate } from "../ca/leaf-certificate.ts";
import { sha256Hex } from "../ca/fingerprint.ts";
import { newSerial } from "../ca/serial.ts";
import { EXTENDED_KEY_USAGES } from "../policy/profile-schema.ts";
import { insertCertificate } from "../store/certificates.ts";
import type { Database } from "../store/database.ts";
import type { ActiveIssuer } from "./issuer.ts";
import { crlPartitionOf, pointersFor, type RevocationPublishing } from "../revocation/pointers.ts";

export const SERVER_PROFILE = "hsm-ca-server";
const LIFETIME_MS = 30 * 86_400_000;

/**
 * The HTTPS listener's own certificate, issued by the active intermediate at
 * every start and stored like any other. Its key is a software key in this
 * process: it protects the transport, it signs nothing of the CA's.
 */
export interface ServerCertificate {
  certPem: string;
  keyPem: string;
  notBefore: Date;
  notAfter: Date;
}

export async function issueServerCertificate(
  db: Database,
  issuer: ActiveIssuer,
  names: string[],
  revocation?: RevocationPublishing,
): Promise<ServerCertificate> {
  const { privateKey, publicKey } = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
  const spki = new Uint8Array(publicKey.export({ format: "der", type: "spki" })).buffer;
  const now = Date.now();
  const sans = names.map((n) => (/^[0-9.]+$|:/.test(n) ? { type: "ip" as const, value: n } : { type: "dns" as const, value: n }));
  const serial = newSerial();
  const partition = revocation ? crlPartitionOf(serial, revocation.partitions) : null;
  const cert = await buildLeafCertificate({
    decision: {
      subject: names[0] ? [["CN", names[0]]] : [],
      sans,
      sanCritical: names.length === 0,
      keyUsage: ["digitalSignature"],
      extendedKeyUsage: [EXTENDED_KEY_USAGES.serverAuth],
      // A minute early for slow clocks, but never before the issuer starts (the lint gate holds validity inside it).
      notBefore: new Date(Math.max(now - 60_000, issuer.certificate.notBefore.getTime())),
      notAfter: new Date(Math.min(now + LIFETIME_MS, issuer.certificate.notAfter.getTime())),
    },
    spki,
    serial,
    issuer: issuer.certificate,
    signer: issuer.signer,
    algorithm: issuer.algorithm,
    revocation: revocation && pointersFor(revocation.urls, issuer.row.id, partition),
  });
  const pem = cert.pem;
  await insertCertificate(db, {
    serial,
    issuerId: issuer.row.id,
    profile: SERVER_PROFILE,
    subject: cert.subject,
    sans: sans.map((s) => `${s.type}:${s.value}`),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    certificatePem: pem,
    fingerprintSha256: sha256Hex(cert.der),
    spkiSha256: sha256Hex(spki),
    requestedBy: null,
    crlPartition: partition,
  });
  return {
    certPem: pem + issuer.chainPem,
    keyPem: privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
  };
}

/** Renew once two thirds of the lifetime have passed, as ACME clients do. */
export function serverCertificateDue(cert: ServerCertificate, now: Date): boolean {
  const life = cert.notAfter.getTime() - cert.notBefore.getTime();
  return now.getTime() >= cert.notBefore.getTime() + (life * 2) / 3;
}
