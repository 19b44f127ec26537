import { asWebCrypto } from "../src/hsm/signing-crypto.ts";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { CertID, OCSPRequest, Request, TBSRequest, id_pkix_ocsp_nonce } from "@peculiar/asn1-ocsp";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, Extension } from "@peculiar/asn1-x509";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildRootCertificate } from "../src/ca/ca-certificate.ts";
import { buildLeafCertificate } from "../src/ca/leaf-certificate.ts";
import { buildCertId, issuerHashes, matchesIssuer, type HashName, type IssuerKeyHashes } from "../src/ca/ocsp-cert-id.ts";
import { OcspRequestError, parseOcspRequest } from "../src/ca/ocsp-request.ts";
import { OID_OCSP_NOCHECK, OID_OCSP_SIGNING } from "../src/ca/ocsp-responder-certificate.ts";
import { buildOcspResponse, ocspErrorResponse, type CertStatus, type OcspResponder } from "../src/ca/ocsp-response.ts";
import { pemOf } from "../src/asn1/pem.ts";
import { newSerial } from "../src/ca/serial.ts";
import type { Signer } from "../src/hsm/key-manager.ts";
import { loadConfig } from "../src/config.ts";
import { Hsm } from "../src/hsm/hsm.ts";
import type { CaKeyAlgorithm } from "../src/hsm/key-algorithms.ts";
import { tempDir } from "./helpers/openssl.ts";

/**
 * OCSP against a real SoftHSM2 token and real openssl: openssl makes the
 * requests we parse and verifies the responses we sign.
 */
const dataDir = tempDir("hsmca-ocsp-");
const work = tempDir("hsmca-ocsp-files-");
const config = loadConfig({ HSM_CA_DATA_DIR: dataDir, HSM_CA_HSM_SESSIONS: "2" });
let hsm: Hsm;

const now = new Date();
const notBefore = new Date(now.getTime() - 3600_000);
const notAfter = new Date(now.getTime() + 30 * 86400_000);

interface Ca {
  cert: x509.X509Certificate;
  signer: Signer;
  algorithm: CaKeyAlgorithm;
  hashes: IssuerKeyHashes;
}

interface World {
  ca: Ca;
  /** Delegated responder: its own HSM key, a certificate from the CA with EKU OCSPSigning and ocsp-nocheck. */
  delegated: OcspResponder;
  /** The CA signing its own responses. */
  caSigned: OcspResponder;
  leaf: x509.X509Certificate;
}

const worlds = {} as Record<"ecdsa-p256" | "rsa-2048", World>;
/** Same subject as the ECDSA CA, another key: its CertIDs share the name hash only. */
let twin: Ca;
/** Another name and another key. */
let stranger: Ca;

async function makeCa(label: string, algorithm: CaKeyAlgorithm, subject: string): Promise<Ca> {
  const key = await hsm.generateKey(label, algorithm);
  const signer = hsm.signer(label, algorithm);
  const cert = await buildRootCertificate({ pathLength: 1, subject, spki: key.spki, serial: newSerial(), notBefore, notAfter, signer });
  return { cert, signer, algorithm, hashes: issuerHashes(cert) };
}

async function makeDelegatedResponder(ca: Ca, label: string, algorithm: CaKeyAlgorithm): Promise<OcspResponder> {
  const key = await hsm.generateKey(label, algorithm);
  const publicKey = new x509.PublicKey(key.spki);
  const extensions = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([OID_OCSP_SIGNING], false),
    new x509.Extension(OID_OCSP_NOCHECK, false, new Uint8Array([5, 0])),
    await x509.SubjectKeyIdentifierExtension.create(publicKey, false, globalThis.crypto),
    new x509.AuthorityKeyIdentifierExtension(ca.cert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId, false),
  ];
  const certificate = await ca.signer.use((signingKey, crypto) =>
    x509.X509CertificateGenerator.create(
      {
        serialNumber: newSerial(),
        subject: `CN=${label}`,
        issuer: ca.cert.subjectName,
        notBefore,
        notAfter,
        publicKey,
        signingKey,
        signingAlgorithm: ca.signer.signingAlgorithm,
        extensions,
      },
      asWebCrypto(crypto),
    ),
  );
  return { certificate, signer: hsm.signer(label, algorithm), keyAlgorithm: algorithm, includeCertificate: true };
}

function caResponder(ca: Ca): OcspResponder {
  return { certificate: ca.cert, signer: ca.signer, keyAlgorithm: ca.algorithm, includeCertificate: false };
}

async function makeLeaf(ca: Ca, serial = newSerial()): Promise<x509.X509Certificate> {
  const keys = (await globalThis.crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const spki = await globalThis.crypto.subtle.exportKey("spki", keys.publicKey);
  const leaf = await buildLeafCertificate({
    decision: {
      subject: [["CN", "leaf.example.test"]],
      sans: [{ type: "dns", value: "leaf.example.test" }],
      sanCritical: false,
      keyUsage: ["digitalSignature"],
      extendedKeyUsage: ["1.3.6.1.5.5.7.3.1"],
      notBefore,
      notAfter,
    },
    spki,
    serial,
    issuer: ca.cert,
    signer: ca.signer,
    algorithm: ca.algorithm,
  });
  return new x509.X509Certificate(leaf.der);
}

beforeAll(async () => {
  hsm = Hsm.open(config.hsm, dataDir);
  for (const algorithm of ["ecdsa-p256", "rsa-2048"] as const) {
    const ca = await makeCa(`ca-${algorithm}`, algorithm, `CN=OCSP Test CA ${algorithm},O=hsm-ca tests`);
    worlds[algorithm] = {
      ca,
      delegated: await makeDelegatedResponder(ca, `ocsp-${algorithm}`, algorithm),
      caSigned: caResponder(ca),
      leaf: await makeLeaf(ca),
    };
  }
  twin = await makeCa("twin", "ecdsa-p256", `CN=OCSP Test CA ecdsa-p256,O=hsm-ca tests`);
  stranger = await makeCa("stranger", "ecdsa-p256", "CN=Another CA");
});
afterAll(() => {
  hsm?.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
  fs.rmSync(work, { recursive: true, force: true });
});

/* ------------------------------------------------------------------------ */

let dirCount = 0;
/** A fresh directory with the named files written into it. */
function dirWith(files: Record<string, string | Uint8Array>): string {
  const dir = path.join(work, String(++dirCount));
  fs.mkdirSync(dir);
  for (const [name, body] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), body);
  return dir;
}

/** openssl in dir, exit status and stdout+stderr together. */
function ossl(dir: string, args: string[]): { status: number | null; out: string } {
  const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
  return { status: r.status, out: r.stdout + r.stderr };
}

function osslOk(dir: string, args: string[]): string {
  const r = ossl(dir, args);
  if (r.status !== 0) throw new Error(`openssl ${args.join(" ")} failed (${r.status}):\n${r.out}`);
  return r.out;
}

const DIGEST_FLAG: Record<HashName, string[]> = { sha1: [], sha256: ["-sha256"], sha384: ["-sha384"], sha512: ["-sha512"] };

/** openssl ocsp -reqout for leaf.pem issued by ca.pem in dir. The digest flag must come before -cert. */
function opensslRequest(dir: string, opts: { hash?: HashName; nonce?: boolean; certs?: string[]; extra?: string[] } = {}): Buffer {
  const certs = (opts.certs ?? ["leaf.pem"]).flatMap((c) => ["-cert", c]);
  const flags = [...DIGEST_FLAG[opts.hash ?? "sha1"], ...(opts.nonce === false ? ["-no_nonce"] : []), ...(opts.extra ?? [])];
  osslOk(dir, ["ocsp", "-issuer", "ca.pem", ...flags, ...certs, "-reqout", "req.der"]);
  return fs.readFileSync(path.join(dir, "req.der"));
}

function expectRefused(der: Uint8Array, message?: RegExp): void {
  let caught: unknown;
  try {
    parseOcspRequest(der);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(OcspRequestError);
  if (message) expect((caught as Error).message).toMatch(message);
}

/** openssl's own view of a certificate's CertID hashes (SHA-1). */
function opensslOcspId(dir: string, certFile: string): { name: string; key: string } {
  const out = osslOk(dir, ["x509", "-noout", "-ocspid", "-in", certFile]);
  return { name: out.match(/Subject OCSP hash: ([0-9A-F]+)/)![1]!, key: out.match(/Public key OCSP hash: ([0-9A-F]+)/)![1]! };
}

const hexOf = (b: Uint8Array) => Buffer.from(b).toString("hex");
const serialOf = (cert: x509.X509Certificate) => cert.serialNumber.toLowerCase().replace(/^(00)+(?=[0-9a-f]{2})/, "");

/* ------------------------------------------------------------------------ */

describe("issuer hashes", () => {
  it("are the SHA-1 subject and public key hashes openssl computes for the CA (x509 -ocspid)", () => {
    for (const ca of [worlds["ecdsa-p256"].ca, worlds["rsa-2048"].ca, twin]) {
      const dir = dirWith({ "ca.pem": pemOf(ca.cert) });
      const id = opensslOcspId(dir, "ca.pem");
      expect(hexOf(ca.hashes.sha1.nameHash).toUpperCase()).toBe(id.name);
      expect(hexOf(ca.hashes.sha1.keyHash).toUpperCase()).toBe(id.key);
    }
    // The twin shares the name, not the key.
    expect(twin.hashes.sha256.nameHash).toEqual(worlds["ecdsa-p256"].ca.hashes.sha256.nameHash);
    expect(twin.hashes.sha256.keyHash).not.toEqual(worlds["ecdsa-p256"].ca.hashes.sha256.keyHash);
    expect(worlds["ecdsa-p256"].ca.hashes.sha512.keyHash).toHaveLength(64);
  });
});

describe("requests made by openssl", () => {
  for (const hash of ["sha1", "sha256", "sha384", "sha512"] as const) {
    it(`parse with ${hash} CertIDs: serial, hashes and nonce, matching the issuer and no other CA`, () => {
      const { ca, leaf } = worlds["ecdsa-p256"];
      const dir = dirWith({ "ca.pem": pemOf(ca.cert), "leaf.pem": pemOf(leaf) });
      const der = opensslRequest(dir, { hash });
      const parsed = parseOcspRequest(der);
      expect(parsed.certIds).toHaveLength(1);
      const id = parsed.certIds[0]!;
      expect(id.hashAlgorithm).toBe(hash);
      expect(id.serial).toBe(serialOf(leaf));
      expect(id.issuerNameHash).toEqual(ca.hashes[hash].nameHash);
      expect(id.issuerKeyHash).toEqual(ca.hashes[hash].keyHash);
      // openssl's text view of the same request agrees.
      // (openssl breaks long hex lines with a backslash.)
      const text = osslOk(dir, ["ocsp", "-reqin", "req.der", "-req_text"]).replace(/\\\n/g, "");
      expect(text).toContain(`Issuer Key Hash: ${hexOf(id.issuerKeyHash).toUpperCase()}`);
      expect(text).toContain(`Serial Number: ${id.serial.toUpperCase()}`);
      // The CertID is kept as sent, byte for byte.
      expect(id.der[0]).toBe(0x30);
      expect(der.indexOf(id.der)).toBeGreaterThan(0);
      // openssl adds a 16-byte nonce by default.
      expect(parsed.nonce).toHaveLength(16);
      expect(text).toContain(`0410${hexOf(parsed.nonce!).toUpperCase()}`);

      expect(matchesIssuer(id, ca.hashes)).toBe(true);
      expect(matchesIssuer(id, twin.hashes)).toBe(false);
      expect(matchesIssuer(id, stranger.hashes)).toBe(false);
      expect(matchesIssuer(id, worlds["rsa-2048"].ca.hashes)).toBe(false);
    });
  }

  it("parse without a nonce when openssl is told -no_nonce", () => {
    const { ca, leaf } = worlds["rsa-2048"];
    const dir = dirWith({ "ca.pem": pemOf(ca.cert), "leaf.pem": pemOf(leaf) });
    const parsed = parseOcspRequest(opensslRequest(dir, { nonce: false }));
    expect(parsed.nonce).toBeUndefined();
    expect(parsed.certIds[0]!.serial).toBe(serialOf(leaf));
    expect(matchesIssuer(parsed.certIds[0]!, ca.hashes)).toBe(true);
    expect(matchesIssuer(parsed.certIds[0]!, worlds["ecdsa-p256"].ca.hashes)).toBe(false);
  });

  it("give serials as lowercase hex without the DER sign byte, keeping a leading zero nibble", async () => {
    const { ca } = worlds["ecdsa-p256"];
    for (const serial of ["80aa0000000000000000000000000001", "0aa1", "01"]) {
      const leaf = await makeLeaf(ca, serial);
      const dir = dirWith({ "ca.pem": pemOf(ca.cert), "leaf.pem": pemOf(leaf) });
      const der = opensslRequest(dir);
      if (serial.startsWith("80")) expect(der.includes(Buffer.from("021100" + serial, "hex"))).toBe(true); // 00 80aa... on the wire
      expect(parseOcspRequest(der).certIds[0]!.serial).toBe(serial);
    }
  });

  it("are accepted when signed, the signature being ignored", () => {
    const { ca, leaf } = worlds["ecdsa-p256"];
    const dir = dirWith({ "ca.pem": pemOf(ca.cert), "leaf.pem": pemOf(leaf) });
    osslOk(dir, ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "s.key", "-out", "s.pem", "-subj", "/CN=requestor", "-days", "1"]);
    const der = opensslRequest(dir, { extra: ["-signer", "s.pem", "-signkey", "s.key"] });
    expect(osslOk(dir, ["ocsp", "-reqin", "req.der", "-req_text"])).toMatch(/Signature Algorithm: ecdsa-with-SHA256/);
    const parsed = parseOcspRequest(der);
    expect(parsed.certIds[0]!.serial).toBe(serialOf(leaf));
    expect(parsed.nonce).toHaveLength(16);
  });
});

/* ------------------------------------------------------------------------ */

/** A CertID for the ECDSA CA's leaf, built with @peculiar/asn1-ocsp. */
function craftedCertId(opts: { hashOid?: string; size?: number } = {}): CertID {
  const { ca, leaf } = worlds["ecdsa-p256"];
  const size = opts.size ?? 20;
  return new CertID({
    hashAlgorithm: new AlgorithmIdentifier({ algorithm: opts.hashOid ?? "1.3.14.3.2.26", parameters: null }),
    issuerNameHash: new OctetString(Buffer.concat([ca.hashes.sha1.nameHash, Buffer.alloc(64)]).subarray(0, size)),
    issuerKeyHash: new OctetString(Buffer.concat([ca.hashes.sha1.keyHash, Buffer.alloc(64)]).subarray(0, size)),
    serialNumber: Uint8Array.from(Buffer.from(serialOf(leaf), "hex")).buffer,
  });
}

function craftedRequest(certIds: CertID[], extensions?: Extension[]): Buffer {
  const tbsRequest = new TBSRequest({ requestList: certIds.map((reqCert) => new Request({ reqCert })) });
  if (extensions) tbsRequest.requestExtensions = extensions;
  return Buffer.from(AsnConvert.serialize(new OCSPRequest({ tbsRequest })));
}

/** The nonce extension with extnValue holding `inner` (normally the DER of an OCTET STRING). */
function nonceExtension(inner: Uint8Array, critical = false): Extension {
  return new Extension({ extnID: id_pkix_ocsp_nonce, critical, extnValue: new OctetString(inner) });
}

const octetString = (b: Uint8Array) => new Uint8Array(AsnConvert.serialize(new OctetString(b)));

describe("malformed requests", () => {
  it("refuses garbage, an empty body, and DER that is not an OCSPRequest", () => {
    expectRefused(new Uint8Array(0), /empty/);
    expectRefused(Buffer.from("GET / HTTP/1.1\r\n\r\n"));
    expectRefused(Uint8Array.from({ length: 200 }, (_, i) => (i * 37 + 11) & 0xff));
    expectRefused(Uint8Array.of(0x05, 0x00)); // NULL
    expectRefused(Uint8Array.of(0x30, 0x00)); // empty SEQUENCE
    expectRefused(new Uint8Array(worlds["ecdsa-p256"].ca.cert.rawData)); // a certificate
    expectRefused(ocspErrorResponse("malformedRequest"));
  });

  it("refuses a truncated request, trailing data, and indefinite lengths", () => {
    const { ca, leaf } = worlds["ecdsa-p256"];
    const der = opensslRequest(dirWith({ "ca.pem": pemOf(ca.cert), "leaf.pem": pemOf(leaf) }));
    expect(parseOcspRequest(der).certIds).toHaveLength(1);
    expectRefused(der.subarray(0, der.length - 1));
    expectRefused(Buffer.concat([der, Buffer.of(0)]));
    // The same request in BER with an indefinite outer length.
    expect(der[1]! < 0x80).toBe(true);
    expectRefused(Buffer.concat([Buffer.of(0x30, 0x80), der.subarray(2), Buffer.of(0, 0)]), /indefinite/);
  });

  it("refuses two CertIDs in one request (RFC 5019 §2.1.1)", async () => {
    const { ca, leaf } = worlds["ecdsa-p256"];
    const other = await makeLeaf(ca);
    const dir = dirWith({ "ca.pem": pemOf(ca.cert), "a.pem": pemOf(leaf), "b.pem": pemOf(other) });
    const der = opensslRequest(dir, { certs: ["a.pem", "b.pem"] });
    expect(osslOk(dir, ["ocsp", "-reqin", "req.der", "-req_text"]).match(/Certificate ID:/g)).toHaveLength(2);
    expectRefused(der, /2 certificates/);
    // And none at all.
    expectRefused(craftedRequest([]), /no certificate/);
  });

  it("accepts nonces of 1 and 32 bytes; refuses 0, 33 and 40 bytes and a nonce that is not an OCTET STRING (RFC 8954)", () => {
    const id = craftedCertId();
    for (const n of [1, 32]) {
      const nonce = Buffer.alloc(n, 0xab);
      expect(parseOcspRequest(craftedRequest([id], [nonceExtension(octetString(nonce))])).nonce).toEqual(nonce);
    }
    const forty = craftedRequest([id], [nonceExtension(octetString(Buffer.alloc(40, 7)))]);
    // openssl reads the 40-byte nonce request without complaint: the refusal is ours.
    const dir = dirWith({ "forty.der": forty });
    expect(osslOk(dir, ["ocsp", "-reqin", "forty.der", "-req_text"])).toContain("OCSP Nonce");
    expectRefused(forty, /40 bytes/);
    expectRefused(craftedRequest([id], [nonceExtension(octetString(Buffer.alloc(33, 7)))]), /33 bytes/);
    expectRefused(craftedRequest([id], [nonceExtension(octetString(new Uint8Array(0)))]), /0 bytes/);
    // The nonce's bare octets, as some old clients send it, are not an OCTET STRING.
    expectRefused(craftedRequest([id], [nonceExtension(Buffer.alloc(16, 0x41))]), /not an OCTET STRING/);
    expectRefused(craftedRequest([id], [nonceExtension(Uint8Array.of(0x02, 0x01, 0x05))]), /not an OCTET STRING/);
  });

  it("refuses unknown hash algorithms and hashes of the wrong size", () => {
    expect(parseOcspRequest(craftedRequest([craftedCertId()])).certIds[0]!.hashAlgorithm).toBe("sha1");
    expect(parseOcspRequest(craftedRequest([craftedCertId({ hashOid: "2.16.840.1.101.3.4.2.1", size: 32 })])).certIds[0]!.hashAlgorithm).toBe("sha256");
    expectRefused(craftedRequest([craftedCertId({ hashOid: "1.2.840.113549.2.5", size: 16 })]), /unsupported CertID hash algorithm/); // MD5
    expectRefused(craftedRequest([craftedCertId({ hashOid: "2.16.840.1.101.3.4.2.10", size: 32 })]), /unsupported CertID hash algorithm/); // SHA3-256
    expectRefused(craftedRequest([craftedCertId({ hashOid: "2.16.840.1.101.3.4.2.1", size: 20 })]), /32 bytes for sha256/);
  });

  it("reads singleRequestExtensions ([0] in Request): unknown non-critical ones ignored, critical ones refused", () => {
    // Hand-built: @peculiar/asn1-ocsp 2.6 writes singleRequestExtensions without their [0] tag.
    const der = (tag: number, ...parts: Uint8Array[]) => {
      const body = Buffer.concat(parts);
      expect(body.length).toBeLessThan(128);
      return Buffer.concat([Buffer.of(tag, body.length), body]);
    };
    const certId = new Uint8Array(AsnConvert.serialize(craftedCertId()));
    const ext = (critical: boolean) => der(0x30, Buffer.from("06032a0304", "hex"), critical ? Buffer.from("0101ff", "hex") : Buffer.alloc(0), Buffer.from("04020500", "hex"));
    const request = (...single: Uint8Array[]) => der(0x30, der(0x30, der(0x30, der(0x30, certId, ...single))));
    expect(parseOcspRequest(request()).certIds[0]!.serial).toBe(serialOf(worlds["ecdsa-p256"].leaf));
    const ok = parseOcspRequest(request(der(0xa0, der(0x30, ext(false)))));
    expect(ok.certIds[0]!.der).toEqual(Buffer.from(certId));
    expectRefused(request(der(0xa0, der(0x30, ext(true)))), /critical/);
    // Without the tag (as asn1-ocsp would write it) the Request is malformed.
    expectRefused(request(der(0x30, ext(false))));
  });

  it("ignores unknown non-critical request extensions and refuses critical ones and repeated nonces", () => {
    const id = craftedCertId();
    const unknown = (critical: boolean) => new Extension({ extnID: "1.2.3.4", critical, extnValue: new OctetString(Uint8Array.of(5, 0)) });
    const nonce = nonceExtension(octetString(Buffer.alloc(16, 1)));
    expect(parseOcspRequest(craftedRequest([id], [unknown(false), nonce])).nonce).toEqual(Buffer.alloc(16, 1));
    expectRefused(craftedRequest([id], [unknown(true), nonce]), /critical/);
    expectRefused(craftedRequest([id], [nonce, nonceExtension(octetString(Buffer.alloc(16, 2)))]), /twice/);
  });
});

/* ------------------------------------------------------------------------ */

const STATUSES: Record<string, CertStatus> = {
  good: { status: "good" },
  revoked: { status: "revoked", revokedAt: new Date("2026-01-02T03:04:05.678Z"), reason: 1 },
  unknown: { status: "unknown" },
};

interface Exchange {
  dir: string;
  request: Buffer;
  response: Uint8Array;
  /** openssl's verdict on the request+response: signature, chain, nonce. */
  check: { status: number | null; out: string };
  /** openssl's status line for leaf.pem. */
  status: { status: number | null; out: string };
  times: { producedAt: Date; thisUpdate: Date; nextUpdate: Date };
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
/** A time as openssl prints it: "Jan  2 03:04:05 2026 GMT". */
function opensslTime(d: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, " ")} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${d.getUTCFullYear()} GMT`;
}

/**
 * openssl asks about the leaf, we answer, openssl checks. Two runs: with
 * -reqin (no -cert, which would make openssl build a fresh request with its
 * own nonce) the nonce is compared; with -issuer/-cert and -no_nonce openssl
 * prints the leaf's status and checks the CertID and the times.
 */
async function exchange(
  world: World,
  responder: OcspResponder,
  status: CertStatus,
  opts: { hash?: HashName; nonce?: boolean; tamperNonce?: (n: Buffer | undefined) => Buffer | undefined } = {},
): Promise<Exchange> {
  const dir = dirWith({ "ca.pem": pemOf(world.ca.cert), "leaf.pem": pemOf(world.leaf) });
  const request = opensslRequest(dir, { hash: opts.hash, nonce: opts.nonce });
  const parsed = parseOcspRequest(request);
  const certId = parsed.certIds[0]!;
  expect(matchesIssuer(certId, world.ca.hashes)).toBe(true);
  const nonce = opts.tamperNonce ? opts.tamperNonce(parsed.nonce) : parsed.nonce;
  const t = new Date();
  const times = { producedAt: t, thisUpdate: new Date(t.getTime() - 60_000), nextUpdate: new Date(t.getTime() + 86400_000) };
  const response = await buildOcspResponse({ responder, certId, status, ...times, ...(nonce ? { nonce } : {}) });
  fs.writeFileSync(path.join(dir, "resp.der"), response);
  const trust = responder.includeCertificate ? ["-CAfile", "ca.pem"] : ["-CAfile", "ca.pem", "-VAfile", "ca.pem"];
  const check = ossl(dir, ["ocsp", "-reqin", "req.der", "-respin", "resp.der", ...trust, "-resp_text"]);
  const st = ossl(dir, ["ocsp", "-respin", "resp.der", "-issuer", "ca.pem", ...trust, ...DIGEST_FLAG[opts.hash ?? "sha1"], "-cert", "leaf.pem", "-no_nonce"]);
  return { dir, request, response, check, status: st, times };
}

describe("responses verified by openssl", () => {
  for (const algorithm of ["ecdsa-p256", "rsa-2048"] as const) {
    for (const mode of ["delegated", "caSigned"] as const) {
      for (const [name, status] of Object.entries(STATUSES)) {
        it(`${algorithm}, ${mode === "delegated" ? "delegated responder" : "signed by the CA"}: ${name}, nonce echoed`, async () => {
          const world = worlds[algorithm];
          const responder = world[mode];
          const x = await exchange(world, responder, status);

          expect(x.check.out).toContain("Response verify OK");
          expect(x.check.out).not.toMatch(/WARNING|Nonce Verify error|Verify Failure/);
          expect(x.check.status).toBe(0);
          expect(x.check.out).toContain(`Cert Status: ${name}`);
          // The nonce is the request's, echoed.
          const nonceHex = hexOf(parseOcspRequest(x.request).nonce!).toUpperCase();
          expect(x.check.out).toMatch(new RegExp(`OCSP Nonce: *\\n *0410${nonceHex}`));
          // ResponderID byKey: the SHA-1 openssl computes over the responder's public key.
          const responderPem = dirWith({ "r.pem": pemOf(responder.certificate) });
          expect(x.check.out).toContain(`Responder Id: ${opensslOcspId(responderPem, "r.pem").key}`);
          // Only a delegated responder's certificate travels with the response.
          expect(x.check.out.includes("BEGIN CERTIFICATE")).toBe(mode === "delegated");
          expect(x.check.out).toContain(algorithm === "rsa-2048" ? "Signature Algorithm: sha256WithRSAEncryption" : "Signature Algorithm: ecdsa-with-SHA256");

          expect(x.status.out).toContain("Response verify OK");
          expect(x.status.out).toContain(`leaf.pem: ${name}`);
          expect(x.status.out).not.toMatch(/WARNING/);
          expect(x.status.status).toBe(0);
          expect(x.check.out).toContain(`Produced At: ${opensslTime(x.times.producedAt)}`);
          expect(x.status.out).toContain(`This Update: ${opensslTime(x.times.thisUpdate)}`);
          expect(x.status.out).toContain(`Next Update: ${opensslTime(x.times.nextUpdate)}`);
          if (name === "revoked") {
            expect(x.status.out).toContain("Reason: keyCompromise");
            // Whole seconds: the .678 is dropped.
            expect(x.status.out).toContain("Revocation Time: Jan  2 03:04:05 2026 GMT");
          } else {
            expect(x.status.out).not.toContain("Reason:");
          }
        }, 60_000);
      }
    }
  }

  it("answers a SHA-256 CertID with the same CertID, which openssl matches", async () => {
    const world = worlds["ecdsa-p256"];
    const x = await exchange(world, world.delegated, STATUSES.good!, { hash: "sha256" });
    expect(x.status.out).toContain("leaf.pem: good");
    expect(x.status.status).toBe(0);
    expect(x.check.out).toContain("Hash Algorithm: sha256");
    expect(Buffer.from(x.response).indexOf(parseOcspRequest(x.request).certIds[0]!.der)).toBeGreaterThan(0);
  });

  it("has no nonce when the request had none", async () => {
    const world = worlds["rsa-2048"];
    const x = await exchange(world, world.delegated, STATUSES.good!, { nonce: false });
    expect(x.check.status).toBe(0);
    expect(x.check.out).toContain("Response verify OK");
    expect(x.check.out).not.toContain("OCSP Nonce");
    expect(x.status.out).toContain("leaf.pem: good");
  });

  it("fails openssl's nonce check when the nonce is not the request's, and is warned about when missing", async () => {
    const world = worlds["ecdsa-p256"];
    const wrong = await exchange(world, world.delegated, STATUSES.good!, { tamperNonce: (n) => Buffer.from(n!.map((b) => b ^ 1)) });
    expect(wrong.check.out).toContain("Nonce Verify error");
    expect(wrong.check.status).not.toBe(0);
    const missing = await exchange(world, world.delegated, STATUSES.good!, { tamperNonce: () => undefined });
    expect(missing.check.out).toContain("WARNING: no nonce in response");
  });

  it("fails openssl's verification when signed by a key the CA did not delegate to", async () => {
    const world = worlds["ecdsa-p256"];
    // Same issuer name, another key, its certificate included: not chained to ca.pem.
    const impostor: OcspResponder = { certificate: twin.cert, signer: twin.signer, keyAlgorithm: "ecdsa-p256", includeCertificate: true };
    const x = await exchange(world, impostor, STATUSES.good!);
    expect(x.check.status).not.toBe(0);
    expect(x.check.out).toContain("Response Verify Failure");
    expect(x.status.out).not.toContain("Response verify OK");
    // And a delegated responder of another CA is not trusted for this one.
    const foreign = worlds["rsa-2048"].delegated;
    const y = await exchange(world, foreign, STATUSES.good!);
    expect(y.check.status).not.toBe(0);
    expect(y.check.out).toContain("Response Verify Failure");
  });

  it("leaves out revocationReason when none is given or it is unspecified (0)", async () => {
    const world = worlds["ecdsa-p256"];
    for (const reason of [undefined, 0]) {
      const status: CertStatus = { status: "revoked", revokedAt: new Date("2026-01-02T03:04:05Z"), ...(reason === undefined ? {} : { reason }) };
      const x = await exchange(world, world.caSigned, status);
      expect(x.status.out).toContain("leaf.pem: revoked");
      expect(x.status.out).not.toContain("Reason:");
    }
    const x = await exchange(world, world.caSigned, { status: "revoked", revokedAt: new Date("2026-01-02T03:04:05Z"), reason: 4 });
    expect(x.status.out).toContain("Reason: superseded");
  });

  it("refuses to sign with an impossible reason, reversed times, or a responder of the wrong key type", async () => {
    const world = worlds["ecdsa-p256"];
    const certId = buildCertId(world.ca.hashes, "sha1", serialOf(world.leaf));
    const base = { responder: world.caSigned, certId, producedAt: now, thisUpdate: now, nextUpdate: new Date(now.getTime() + 1000) };
    await expect(buildOcspResponse({ ...base, status: { status: "good" } })).resolves.toBeInstanceOf(Uint8Array);
    await expect(buildOcspResponse({ ...base, status: { status: "revoked", revokedAt: now, reason: 7 } })).rejects.toThrow(/CRLReason/);
    await expect(buildOcspResponse({ ...base, status: { status: "good" }, nextUpdate: new Date(now.getTime() - 1000) })).rejects.toThrow(/nextUpdate/);
    await expect(buildOcspResponse({ ...base, status: { status: "good" }, nonce: Buffer.alloc(33) })).rejects.toThrow(/nonce/);
    const mislabelled = { ...world.caSigned, keyAlgorithm: "rsa-2048" as const };
    await expect(buildOcspResponse({ ...base, responder: mislabelled, status: { status: "good" } })).rejects.toThrow(/not rsa-2048/);
  });

  it("pre-signs with buildCertId: the same CertID openssl sends, answered for the leaf", async () => {
    const world = worlds["rsa-2048"];
    const dir = dirWith({ "ca.pem": pemOf(world.ca.cert), "leaf.pem": pemOf(world.leaf) });
    for (const hash of ["sha1", "sha256"] as const) {
      const fromOpenssl = parseOcspRequest(opensslRequest(dir, { hash })).certIds[0]!;
      const built = buildCertId(world.ca.hashes, hash, serialOf(world.leaf));
      expect(hexOf(built.der)).toBe(hexOf(fromOpenssl.der));
      expect({ ...built, der: undefined }).toEqual({ ...fromOpenssl, der: undefined });
    }
    const t = new Date();
    const response = await buildOcspResponse({
      responder: world.delegated,
      certId: buildCertId(world.ca.hashes, "sha1", serialOf(world.leaf)),
      status: { status: "good" },
      producedAt: t,
      thisUpdate: t,
      nextUpdate: new Date(t.getTime() + 3600_000),
    });
    fs.writeFileSync(path.join(dir, "resp.der"), response);
    const out = osslOk(dir, ["ocsp", "-respin", "resp.der", "-issuer", "ca.pem", "-CAfile", "ca.pem", "-cert", "leaf.pem", "-no_nonce"]);
    expect(out).toContain("Response verify OK");
    expect(out).toContain("leaf.pem: good");
    // A serial with the top bit set gets its sign byte.
    expect(hexOf(buildCertId(world.ca.hashes, "sha1", "80aa").der).endsWith("02030080aa")).toBe(true);
    expect(buildCertId(world.ca.hashes, "sha1", "80aa").serial).toBe("80aa");
  });
});

describe("error responses", () => {
  const cases = [
    ["malformedRequest", "malformedrequest", 1],
    ["internalError", "internalerror", 2],
    ["tryLater", "trylater", 3],
    ["sigRequired", "sigrequired", 5],
    ["unauthorized", "unauthorized", 6],
  ] as const;
  for (const [status, text, code] of cases) {
    it(`${status} reads in openssl as ${text} (${code}) with no responseBytes`, () => {
      const der = ocspErrorResponse(status);
      expect(hexOf(der)).toBe(`30030a010${code}`);
      const dir = dirWith({ "resp.der": der });
      const r = ossl(dir, ["ocsp", "-respin", "resp.der", "-resp_text"]);
      expect(r.out).toContain(`Responder Error: ${text} (${code})`);
      const ignored = ossl(dir, ["ocsp", "-respin", "resp.der", "-resp_text", "-ignore_err", "-noverify"]);
      expect(ignored.out).toContain(`OCSP Response Status: ${text} (0x${code})`);
      expect(ignored.out).not.toContain("Response Type");
    });
  }
});
