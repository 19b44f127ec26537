import crypto from "node:crypto";
import tls from "node:tls";
import * as x509 from "@peculiar/x509";
import type { AcmeIdentifier } from "../problem.ts";
import {
  OK,
  ValidationFailure,
  checkIdentifier,
  deadlineSignal,
  failureResult,
  ipBytes,
  reverseName,
} from "./common.ts";
import { makeResolver, resolveAddress } from "./resolve.ts";
import type { ValidationConfig, ValidationResult } from "./types.ts";

export const ACME_TLS_ALPN = "acme-tls/1";
/** id-pe-acmeIdentifier (RFC 8737 §6.1). */
export const ACME_IDENTIFIER_OID = "1.3.6.1.5.5.7.1.31";

/**
 * tls-alpn-01 (RFC 8737; RFC 8738 §6 for IP identifiers): a TLS handshake
 * offering only "acme-tls/1" must return a certificate for exactly this
 * identifier carrying a critical acmeIdentifier extension with
 * SHA-256(keyAuthorization).
 */
export async function validateTlsAlpn01(
  id: AcmeIdentifier,
  keyAuthorization: string,
  cfg: ValidationConfig,
  signal?: AbortSignal,
): Promise<ValidationResult> {
  const abort = deadlineSignal(cfg, signal);
  try {
    const target = checkIdentifier(id);
    // Node refuses an IP address as SNI; RFC 8738 §6 uses the reverse-DNS name.
    const servername = id.type === "ip" ? reverseName(target) : target;
    const address = id.type === "ip" ? target : (await resolveAddress(makeResolver(cfg, abort), target)).address;
    const der = await handshake(address, cfg.tlsAlpnPort, servername, abort, cfg);
    checkCertificate(der, id, target, keyAuthorization);
    return OK;
  } catch (err) {
    return failureResult(err);
  }
}

/** Connects, checks the negotiated ALPN protocol and returns the peer certificate's DER. */
function handshake(host: string, port: number, servername: string, signal: AbortSignal, cfg: ValidationConfig): Promise<Buffer> {
  const where = `${host.includes(":") ? `[${host}]` : host}:${port}`;
  return new Promise<Buffer>((resolve, reject) => {
    let tcpConnected = false;
    const socket = tls.connect({
      host,
      port,
      servername,
      ALPNProtocols: [ACME_TLS_ALPN],
      // The challenge certificate is self-signed by design (RFC 8737 §3);
      // what proves control is its acmeIdentifier extension, checked below.
      rejectUnauthorized: false,
    });
    // One place that settles the promise exactly once and always closes the
    // socket (we only need the handshake) and drops the abort listener.
    const finish = (outcome: Buffer | ValidationFailure) => {
      signal.removeEventListener("abort", onAbort);
      socket.destroy();
      if (outcome instanceof ValidationFailure) reject(outcome);
      else resolve(outcome);
    };
    const onAbort = () => {
      const during = tcpConnected ? "waiting for the TLS handshake with" : "connecting to";
      finish(new ValidationFailure("connection", `Timed out after ${cfg.timeoutMs} ms ${during} ${where}`));
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });

    socket.once("connect", () => (tcpConnected = true));
    socket.once("secureConnect", () => {
      const cert = socket.getPeerX509Certificate();
      const alpn = socket.alpnProtocol;
      if (alpn !== ACME_TLS_ALPN) {
        finish(new ValidationFailure("tls", `${where} negotiated ALPN ${alpn ? `"${alpn}"` : "none"}, not "${ACME_TLS_ALPN}"`));
      } else if (!cert) {
        finish(new ValidationFailure("tls", `${where} sent no certificate`));
      } else {
        finish(cert.raw);
      }
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      const code = err.code ?? err.message;
      // Before the TCP connection it is a connection problem; after, the TLS handshake failed.
      if (tcpConnected) finish(new ValidationFailure("tls", `TLS handshake with ${where} failed: ${code}`));
      else finish(new ValidationFailure("connection", `Error connecting to ${where}: ${code}`));
    });
    // No-op if already settled; otherwise the peer hung up mid-handshake.
    socket.once("close", () => finish(new ValidationFailure("tls", `${where} closed the connection during the TLS handshake`)));
  });
}

/** RFC 8737 §3: exactly one SAN, equal to the identifier, and the critical acmeIdentifier extension. */
function checkCertificate(der: Buffer, id: AcmeIdentifier, target: string, keyAuthorization: string): void {
  let cert: x509.X509Certificate;
  let names: readonly x509.GeneralName[];
  try {
    cert = new x509.X509Certificate(new Uint8Array(der)); // a copy typed as ArrayBuffer-backed
    const sans = cert.getExtensions(x509.SubjectAlternativeNameExtension);
    if (sans.length !== 1) throw new ValidationFailure("incorrectResponse", `Certificate has ${sans.length} subjectAltName extensions, expected 1`);
    names = sans[0]!.names.items;
  } catch (err) {
    if (err instanceof ValidationFailure) throw err;
    throw new ValidationFailure("incorrectResponse", `Cannot parse the challenge certificate: ${(err as Error).message}`);
  }

  const listed = names.map((n) => `${n.type}:${n.value}`).join(", ");
  const [only] = names;
  const matches =
    names.length === 1 &&
    only !== undefined &&
    (id.type === "dns"
      ? only.type === "dns" && only.value.toLowerCase() === target
      : only.type === "ip" && ipBytes(only.value)?.equals(ipBytes(target)!) === true);
  if (!matches) {
    throw new ValidationFailure("incorrectResponse", `Certificate must name exactly ${id.type}:${target}, but names ${listed || "nothing"}`);
  }

  const acmeExts = cert.extensions.filter((e) => e.type === ACME_IDENTIFIER_OID);
  const ext = acmeExts[0];
  if (acmeExts.length !== 1 || !ext) {
    throw new ValidationFailure("incorrectResponse", `Certificate has ${acmeExts.length} acmeIdentifier extensions, expected 1`);
  }
  if (!ext.critical) throw new ValidationFailure("incorrectResponse", "The acmeIdentifier extension is not marked critical");
  // extnValue must be exactly the DER OCTET STRING (tag 4, length 32) of the digest.
  const digest = crypto.createHash("sha256").update(keyAuthorization).digest();
  const expected = Buffer.concat([Buffer.from([0x04, 0x20]), digest]);
  const actual = Buffer.from(ext.value);
  if (!actual.equals(expected)) {
    throw new ValidationFailure(
      "incorrectResponse",
      `acmeIdentifier extension holds ${actual.subarray(0, 40).toString("hex")}, expected ${expected.toString("hex")}`,
    );
  }
}
