import crypto from "node:crypto";
import * as x509 from "@peculiar/x509";
import { derOfPemBlock } from "../asn1/pem.ts";
import { ExternalCaError } from "./external-ca-error.ts";

/**
 * Checks on CA certificates made outside hsm-ca. Signatures and issuer
 * names are checked by node:crypto (OpenSSL); extensions are read with
 * @peculiar/x509. Each failure is an ExternalCaError naming the certificate.
 */

export interface CertificateFile {
  /** What it is called in messages: "root.pem", "--chain certificate 2". */
  name: string;
  cert: x509.X509Certificate;
  node: crypto.X509Certificate;
}

/** Every CERTIFICATE block in a PEM text, in order; at least one. */
export function readCertificates(pem: string, what: string): CertificateFile[] {
  const blocks: Uint8Array[] = [];
  for (let at = pem.indexOf("-----BEGIN CERTIFICATE-----"); at >= 0; at = pem.indexOf("-----BEGIN CERTIFICATE-----", at + 1)) {
    const block = derOfPemBlock(pem.slice(at), ["CERTIFICATE"]);
    if ("problem" in block) throw new ExternalCaError(`${what}: certificate ${blocks.length + 1} is not valid PEM`);
    blocks.push(block.der);
  }
  if (blocks.length === 0) throw new ExternalCaError(`${what}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it`);
  return blocks.map((der, i) => {
    const name = blocks.length === 1 ? what : `${what} certificate ${i + 1}`;
    try {
      return { name, cert: new x509.X509Certificate(Buffer.from(der)), node: new crypto.X509Certificate(Buffer.from(der)) };
    } catch {
      throw new ExternalCaError(`${name}: not an X.509 certificate`);
    }
  });
}

export function requireValidNow(c: CertificateFile, now: Date): void {
  if (c.cert.notBefore > now) throw new ExternalCaError(`${c.name} (${c.cert.subject}) is not valid yet: notBefore ${c.cert.notBefore.toISOString()}`);
  if (c.cert.notAfter <= now) throw new ExternalCaError(`${c.name} (${c.cert.subject}) has expired: notAfter ${c.cert.notAfter.toISOString()}`);
}

/** basicConstraints CA:TRUE and, with keyUsage present (RFC 5280 requires it of CAs), keyCertSign among its bits. */
export function requireCa(c: CertificateFile, alsoCrlSign = false): void {
  const bc = c.cert.getExtension(x509.BasicConstraintsExtension);
  if (!bc?.ca) throw new ExternalCaError(`${c.name} (${c.cert.subject}) is not a CA certificate: basicConstraints CA:TRUE is missing`);
  const ku = c.cert.getExtension(x509.KeyUsagesExtension);
  if (!ku) throw new ExternalCaError(`${c.name} (${c.cert.subject}) has no keyUsage extension: a CA certificate needs keyCertSign`);
  if (!(ku.usages & x509.KeyUsageFlags.keyCertSign)) throw new ExternalCaError(`${c.name} (${c.cert.subject}) may not sign certificates: keyUsage lacks keyCertSign`);
  if (alsoCrlSign && !(ku.usages & x509.KeyUsageFlags.cRLSign)) {
    throw new ExternalCaError(`${c.name} (${c.cert.subject}) may not sign CRLs: keyUsage lacks cRLSign, which hsm-ca needs to publish the CRLs of what it issues`);
  }
}

/** Self-issued and signed by its own key. */
export function isSelfSigned(c: CertificateFile): boolean {
  return c.node.checkIssued(c.node) && c.node.verify(c.node.publicKey);
}

/** Was `child` signed by `issuer` (names match and the signature verifies)? */
export function issuedBy(child: CertificateFile, issuer: CertificateFile): boolean {
  return child.node.checkIssued(issuer.node) && child.node.verify(issuer.node.publicKey);
}

/**
 * The path from `cert` up to `root` through `candidates` (each used once):
 * each certificate's issuer found by name and signature, every certificate
 * valid now, every issuer a CA allowed to sign certificates, and every
 * pathLenConstraint respected (RFC 5280 §4.2.1.9: the non-self-issued CA
 * certificates below an issuer, `cert` included, are at most its pathLen,
 * since `cert` issues leaves). Returns the
 * certificates strictly between `cert` and `root`, nearest first.
 */
export function pathToRoot(cert: CertificateFile, candidates: CertificateFile[], root: CertificateFile, now: Date): CertificateFile[] {
  const between: CertificateFile[] = [];
  const left = candidates.filter((c) => c.node.fingerprint256 !== root.node.fingerprint256 && c.node.fingerprint256 !== cert.node.fingerprint256);
  let current = cert;
  for (;;) {
    if (issuedBy(current, root)) break;
    const next = left.find((c) => !between.includes(c) && issuedBy(current, c));
    if (!next) {
      const via = between.length ? ` (through ${between.map((b) => b.cert.subject).join(" -> ")})` : "";
      throw new ExternalCaError(
        `${current.name} (${current.cert.subject}) is not signed by the stored root ${root.cert.subject}${via}${candidates.length ? " or by a --chain certificate" : ": give the certificates between them with --chain"}`,
      );
    }
    between.push(next);
    current = next;
  }
  for (const issuer of [...between, root]) {
    requireValidNow(issuer, now);
    requireCa(issuer);
  }
  const issuers = [...between, root];
  issuers.forEach((issuer, i) => {
    // CA certificates below this issuer in the path: `cert` and the intermediates nearer to it. Self-issued ones do not count.
    const below = [cert, ...between.slice(0, i)].filter((c) => !c.node.checkIssued(c.node)).length;
    const limit = issuer.cert.getExtension(x509.BasicConstraintsExtension)?.pathLength;
    // Ours is itself an intermediate (its leaves end the path), so it counts against every pathLen above it.
    if (limit !== undefined && below > limit) {
      throw new ExternalCaError(`${issuer.name} (${issuer.cert.subject}) has pathLen ${limit}: it allows ${limit} CA certificate(s) below it, this path has ${below}`);
    }
  });
  return between;
}

/** SHA-256 of the SubjectPublicKeyInfo, hex: how hsm-ca names keys across certificates and CSRs. */
export function spkiSha256(publicKey: x509.PublicKey): string {
  return crypto.createHash("sha256").update(Buffer.from(publicKey.rawData)).digest("hex");
}

/** The key's algorithm in hsm-ca's names (ecdsa-p256, rsa-3072...), or the key type when hsm-ca has no name for it (ed25519...). */
export function keyAlgorithmOf(publicKey: x509.PublicKey): string {
  const key = crypto.createPublicKey({ key: Buffer.from(publicKey.rawData), format: "der", type: "spki" });
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === "ec") {
    const curve = { prime256v1: "p256", secp384r1: "p384", secp521r1: "p521" }[details.namedCurve ?? ""] ?? details.namedCurve;
    return `ecdsa-${curve}`;
  }
  if (key.asymmetricKeyType === "rsa") return `rsa-${details.modulusLength}`;
  return key.asymmetricKeyType ?? "unknown";
}
