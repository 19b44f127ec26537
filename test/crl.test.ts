import { setLintEnabled } from "../src/lint/gate.ts";
import { asWebCrypto } from "../src/hsm/signing-crypto.ts";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildRootCertificate } from "../src/ca/ca-certificate.ts";
import { buildLeafCertificate } from "../src/ca/leaf-certificate.ts";
import { buildCrl, CRL_REASON, type CrlEntry, type CrlInput } from "../src/ca/crl.ts";
import * as der from "../src/asn1/der-writer.ts";
import { readChildren, readTlv, type Tlv } from "../src/asn1/der-reader.ts";
import { derToPem, pemOf } from "../src/asn1/pem.ts";
import { newSerial } from "../src/ca/serial.ts";
import { signatureAlgorithmDer } from "../src/ca/signature.ts";
import type { Signer } from "../src/hsm/key-manager.ts";
import { loadConfig } from "../src/config.ts";
import { Hsm } from "../src/hsm/hsm.ts";
import type { CaKeyAlgorithm } from "../src/hsm/key-algorithms.ts";
import type { Decision } from "../src/policy/decide.ts";
import { tempDir } from "./helpers/openssl.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

// ---------------------------------------------------------------------------
// The DER writer on its own

describe("DER writer", () => {
  it("encodes lengths in the shortest form", () => {
    const cases: Array<[number, string]> = [
      [0, "00"],
      [127, "7f"],
      [128, "8180"],
      [255, "81ff"],
      [256, "820100"],
      [65535, "82ffff"],
      [65536, "83010000"],
      [0x1000000, "8401000000"],
    ];
    for (const [n, want] of cases) {
      expect(hex(der.encodeLength(n)), `length ${n}`).toBe(want);
      expect(der.lengthSize(n)).toBe(want.length / 2);
      expect(der.tlvSize(n)).toBe(1 + want.length / 2 + n);
    }
    expect(() => der.lengthSize(-1)).toThrow();
    expect(() => der.lengthSize(2 ** 32)).toThrow();
  });

  it("wraps content in tag and length, with long lengths", () => {
    expect(hex(der.tlv(0x04, Uint8Array.of(1, 2), Uint8Array.of(3)))).toBe("0403010203");
    const big = der.sequence(new Uint8Array(300));
    expect(hex(big.subarray(0, 4))).toBe("3082012c");
    expect(big.length).toBe(304);
    expect(hex(der.sequence())).toBe("3000");
    expect(hex(der.octetString(Uint8Array.of(0xab)))).toBe("0401ab");
    expect(hex(der.boolean(true))).toBe("0101ff");
    expect(hex(der.boolean(false))).toBe("010100");
    expect(hex(der.NULL)).toBe("0500");
    expect(hex(der.ia5String("http://x"))).toBe("1608687474703a2f2f78");
    expect(() => der.ia5String("http://é")).toThrow(/IA5String/);
  });

  it("makes context tags, constructed or primitive", () => {
    expect(hex(der.contextTag(0, true, der.NULL))).toBe("a0020500");
    expect(hex(der.contextTag(6, false, Uint8Array.of(0x61)))).toBe("860161");
    expect(hex(der.contextTag(1, false, Uint8Array.of(0xff)))).toBe("8101ff");
    expect(() => der.contextTag(31, false)).toThrow();
  });

  it("encodes non-negative INTEGERs from hex minimally, with 00 before a high bit", () => {
    const cases: Array<[string, string]> = [
      ["01", "020101"],
      ["7f", "02017f"],
      ["80", "02020080"],
      ["ff", "020200ff"],
      ["00ff", "020200ff"],
      ["0000", "020100"],
      ["0", "020100"],
      ["abc", "02020abc"],
      ["1234", "02021234"],
      ["fffe", "020300fffe"],
      ["FFFE", "020300fffe"],
      ["007f", "02017f"],
      ["0080", "02020080"],
    ];
    for (const [input, want] of cases) expect(hex(der.integerFromHex(input)), input).toBe(want);
    for (const bad of ["", "xyz", "12g4", "1é", "-1", "0x12"]) expect(() => der.integerFromHex(bad), bad).toThrow(/not a hex number/);
    // A 20-byte serial with the high bit set: 21 content bytes.
    const serial = "80" + "11".repeat(19);
    expect(hex(der.integerFromHex(serial))).toBe("021500" + serial);
  });

  it("encodes bigints and ENUMERATED", () => {
    expect(hex(der.integerFromBigInt(0n))).toBe("020100");
    expect(hex(der.integerFromBigInt(42n))).toBe("02012a");
    expect(hex(der.integerFromBigInt(255n))).toBe("020200ff");
    expect(hex(der.integerFromBigInt(2n ** 64n))).toBe("0209010000000000000000");
    expect(() => der.integerFromBigInt(-1n)).toThrow(/negative/);
    expect(hex(der.enumerated(1))).toBe("0a0101");
    expect(hex(der.enumerated(200))).toBe("0a0200c8");
  });

  it("encodes OIDs", () => {
    expect(hex(der.oid("2.5.29.20"))).toBe("0603551d14");
    expect(hex(der.oid("1.2.840.10045.4.3.2"))).toBe("06082a8648ce3d040302");
    expect(hex(der.oid("1.2.840.113549.1.1.11"))).toBe("06092a864886f70d01010b");
    expect(hex(der.oid("2.999.3"))).toBe("0603883703"); // X.690 §8.19.5 example
    for (const bad of ["1", "3.1", "1.40", "1.2.", "1.02", "a.b"]) expect(() => der.oid(bad), bad).toThrow(/not an OID/);
  });

  it("writes UTCTime for 1950-2049 and GeneralizedTime otherwise, whole seconds, Zulu", () => {
    const t = (iso: string) => Buffer.from(der.time(new Date(iso)));
    const ascii = (b: Buffer) => [b[0], b.subarray(2).toString("latin1")];
    expect(ascii(t("1950-01-01T00:00:00Z"))).toEqual([0x17, "500101000000Z"]);
    expect(ascii(t("2049-12-31T23:59:59.999Z"))).toEqual([0x17, "491231235959Z"]);
    expect(ascii(t("2024-02-29T08:09:10.5Z"))).toEqual([0x17, "240229080910Z"]);
    expect(ascii(t("2050-01-01T00:00:00Z"))).toEqual([0x18, "20500101000000Z"]);
    expect(ascii(t("1949-12-31T23:59:59Z"))).toEqual([0x18, "19491231235959Z"]);
    expect(ascii(t("9999-12-31T23:59:59Z"))).toEqual([0x18, "99991231235959Z"]);
    expect(t("2030-01-01T00:00:00Z")[1]).toBe(13);
    expect(t("2130-01-01T00:00:00Z")[1]).toBe(15);
    expect(der.timeLength(new Date("2049-06-01T00:00:00Z"))).toBe(15);
    expect(der.timeLength(new Date("2050-06-01T00:00:00Z"))).toBe(17);
    const g = Buffer.from(der.generalizedTime(new Date("2024-01-02T03:04:05Z")));
    expect(ascii(g)).toEqual([0x18, "20240102030405Z"]);
    expect(() => der.time(new Date("nonsense"))).toThrow(/not a valid date/);
    expect(() => der.time(new Date(Date.UTC(10000, 0, 1)))).toThrow(/outside years/);
  });

  it("reads TLVs back and refuses non-minimal lengths", () => {
    const seq = der.sequence(der.integerFromHex("01"), der.octetString(new Uint8Array(200)));
    const top = readTlv(seq, 0);
    expect(top).toEqual({ tag: 0x30, start: 0, contentStart: 3, end: seq.length });
    expect(readChildren(seq, top).map((c) => [c.tag, c.end - c.contentStart])).toEqual([
      [0x02, 1],
      [0x04, 200],
    ]);
    expect(() => readTlv(Uint8Array.of(0x30, 0x81, 0x05, 0, 0, 0, 0, 0), 0)).toThrow(/non-minimal/);
    expect(() => readTlv(Uint8Array.of(0x30, 0x80, 0, 0), 0)).toThrow(/unsupported/);
    expect(() => readTlv(Uint8Array.of(0x30, 0x05, 0), 0)).toThrow(/overruns/);
  });
});

// ---------------------------------------------------------------------------
// CRLs signed by CA keys on a real SoftHSM2 token, checked with real openssl

const dataDir = tempDir("hsmca-crl-");
const files = tempDir("hsmca-crl-files-");
const config = loadConfig({ HSM_CA_DATA_DIR: dataDir, HSM_CA_HSM_SESSIONS: "2" });
let hsm: Hsm;

interface Ca {
  algorithm: CaKeyAlgorithm;
  signer: Signer;
  cert: x509.X509Certificate;
  pemFile: string;
}
const cas = new Map<CaKeyAlgorithm, Ca>();
const ALGORITHMS: CaKeyAlgorithm[] = ["ecdsa-p256", "rsa-2048"];
let leafSpki: ArrayBuffer;
let fileCount = 0;

const HOUR = 3600_000;
const now = () => new Date();
const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000);

beforeAll(async () => {
  hsm = Hsm.open(config.hsm, dataDir);
  for (const algorithm of ALGORITHMS) {
    const label = `crl-test/${algorithm}`;
    const key = await hsm.generateKey(label, algorithm);
    const signer = hsm.signer(label, algorithm);
    const cert = await buildRootCertificate({
      pathLength: 1,
      subject: `CN=CRL Test CA ${algorithm}, O=hsm-ca tests`,
      spki: key.spki,
      serial: newSerial(),
      notBefore: new Date(Date.now() - HOUR),
      notAfter: new Date(Date.now() + 10 * 365 * 24 * HOUR),
      signer,
    });
    cas.set(algorithm, { algorithm, signer, cert, pemFile: write(`ca-${algorithm}.pem`, pemOf(cert)) });
  }
  const leafKey = (await globalThis.crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
  leafSpki = await globalThis.crypto.subtle.exportKey("spki", leafKey.publicKey);
});

afterAll(() => {
  hsm?.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
  fs.rmSync(files, { recursive: true, force: true });
});

function write(name: string, body: string | Uint8Array): string {
  const p = path.join(files, `${++fileCount}-${name}`);
  fs.writeFileSync(p, body);
  return p;
}

function run(cmd: string, args: string[]): { ok: boolean; output: string } {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 256 << 20 });
  return { ok: r.status === 0, output: r.stdout + r.stderr };
}

/** `openssl crl -text` of a DER CRL. */
function crlText(crl: Uint8Array): string {
  const r = run("openssl", ["crl", "-inform", "DER", "-in", write("crl.der", crl), "-noout", "-text"]);
  expect(r.ok, r.output).toBe(true);
  return r.output;
}

/** `openssl crl -CAfile`: checks the CRL's signature with the CA certificate. */
function crlVerify(crl: Uint8Array, ca: Ca): string {
  return run("openssl", ["crl", "-inform", "DER", "-in", write("crl.der", crl), "-CAfile", ca.pemFile, "-noout"]).output;
}

/** `openssl verify -crl_check` of a leaf against the CA and this CRL. */
function verifyWithCrl(ca: Ca, crl: Uint8Array, leaf: x509.X509Certificate): { ok: boolean; output: string } {
  return run("openssl", ["verify", "-crl_check", "-CAfile", ca.pemFile, "-CRLfile", write("crl.pem", derToPem(crl, "X509 CRL")), write("leaf.pem", pemOf(leaf))]);
}

function leafDecision(name: string): Decision {
  return {
    subject: [["CN", name]],
    sans: [{ type: "dns", value: name }],
    sanCritical: false,
    keyUsage: ["digitalSignature"],
    extendedKeyUsage: ["1.3.6.1.5.5.7.3.1"],
    notBefore: minutesAgo(5),
    notAfter: new Date(Date.now() + 24 * HOUR),
  };
}

async function issueLeaf(ca: Ca, name: string): Promise<{ cert: x509.X509Certificate; serial: string }> {
  const serial = newSerial();
  const leaf = await buildLeafCertificate({ decision: leafDecision(name), spki: leafSpki, serial, issuer: ca.cert, signer: ca.signer, algorithm: ca.algorithm });
  const cert = new x509.X509Certificate(leaf.der);
  return { cert, serial };
}

/** A leaf with a CRL Distribution Points extension naming `cdpUrl`. */
async function issueLeafWithCdp(ca: Ca, name: string, cdpUrl: string): Promise<{ cert: x509.X509Certificate; serial: string }> {
  const serial = newSerial();
  const publicKey = new x509.PublicKey(leafSpki);
  const ski = ca.cert.getExtension(x509.SubjectKeyIdentifierExtension)!;
  const cert = await ca.signer.use((signingKey, crypto) =>
    x509.X509CertificateGenerator.create(
      {
        serialNumber: serial,
        subject: `CN=${name}`,
        issuer: ca.cert.subjectName,
        notBefore: minutesAgo(5),
        notAfter: new Date(Date.now() + 24 * HOUR),
        publicKey,
        signingKey,
        signingAlgorithm: ca.signer.signingAlgorithm,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.AuthorityKeyIdentifierExtension(ski.keyId, false),
          new x509.CRLDistributionPointsExtension([cdpUrl]),
        ],
      },
      asWebCrypto(crypto),
    ),
  );
  return { cert, serial };
}

function crlInput(ca: Ca, more: Partial<CrlInput> = {}): CrlInput {
  return {
    issuer: ca.cert,
    signer: ca.signer,
    keyAlgorithm: ca.algorithm,
    crlNumber: 42n,
    thisUpdate: minutesAgo(1),
    nextUpdate: new Date(Date.now() + 24 * HOUR),
    entries: [],
    ...more,
  };
}

/** The tbsCertList's fields, and the outer signatureAlgorithm. */
function crlFields(crl: Uint8Array): { tbs: Tlv; fields: Tlv[]; outer: Tlv[] } {
  const top = readTlv(crl, 0);
  expect(top.end).toBe(crl.length);
  const outer = readChildren(crl, top);
  expect(outer.map((t) => t.tag)).toEqual([0x30, 0x30, 0x03]);
  return { tbs: outer[0]!, fields: readChildren(crl, outer[0]!), outer };
}

const bytesOf = (buf: Uint8Array, t: Tlv) => hex(buf.subarray(t.start, t.end));
/** The subject Name DER as the certificate has it. */
function subjectDer(cert: x509.X509Certificate): string {
  const raw = new Uint8Array(cert.rawData);
  const tbs = readChildren(raw, readTlv(raw, 0))[0]!;
  const fields = readChildren(raw, tbs);
  return bytesOf(raw, fields[fields[0]!.tag === 0xa0 ? 5 : 4]!);
}
/** openssl's way of printing a key identifier. */
const colonHex = (h: string) => h.toUpperCase().match(/../g)!.join(":");

/** Entries as openssl prints them: serial -> the lines under it. */
function entryBlocks(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const parts = text.split(/\n\s*Serial Number: /).slice(1);
  for (const p of parts) {
    const [serial, ...rest] = p.split("\n");
    out.set(serial!.trim(), rest.join("\n").split(/\n\s*Signature Algorithm/)[0]!);
  }
  return out;
}

for (const algorithm of ALGORITHMS) {
  describe(`CRLs signed with ${algorithm} on SoftHSM2`, () => {
    const ca = () => cas.get(algorithm)!;

    it("is a v2 CRL with CRL number, AKI, reasons and invalidity dates that openssl reads and verifies", async () => {
      const entries: CrlEntry[] = [
        { serial: "1a2b3c", revokedAt: new Date("2025-03-04T05:06:07Z"), reason: CRL_REASON.keyCompromise, invalidityDate: new Date("2025-03-01T00:00:00Z") },
        { serial: "2b3c4d", revokedAt: new Date("2025-03-05T05:06:07Z"), reason: CRL_REASON.superseded },
        { serial: "3c4d5e", revokedAt: new Date("2025-03-06T05:06:07Z") },
        { serial: "4d5e6f", revokedAt: new Date("2025-03-07T05:06:07Z"), reason: CRL_REASON.unspecified },
        { serial: "5e6f70", revokedAt: new Date("2025-03-08T05:06:07Z"), reason: CRL_REASON.cessationOfOperation },
        { serial: "6f7081", revokedAt: new Date("2025-03-09T05:06:07Z"), reason: CRL_REASON.cACompromise },
        { serial: "708192", revokedAt: new Date("2025-03-10T05:06:07Z"), reason: CRL_REASON.affiliationChanged },
        { serial: "8192a3", revokedAt: new Date("2025-03-11T05:06:07Z"), reason: CRL_REASON.certificateHold },
        { serial: "92a3b4", revokedAt: new Date("2025-03-12T05:06:07Z"), reason: CRL_REASON.privilegeWithdrawn },
        { serial: "a3b4c5", revokedAt: new Date("2025-03-13T05:06:07Z"), reason: CRL_REASON.aACompromise },
      ];
      const crl = await buildCrl(crlInput(ca(), { entries, crlNumber: 1234567890123456789n }));
      const text = crlText(crl);
      expect(text).toContain("Version 2 (0x1)");
      expect(text).toContain(`Signature Algorithm: ${algorithm.startsWith("ecdsa") ? "ecdsa-with-SHA256" : "sha256WithRSAEncryption"}`);
      expect(text).toContain(`Issuer: CN = CRL Test CA ${algorithm}, O = hsm-ca tests`);
      expect(text).toMatch(/X509v3 CRL Number: *\n\s+1234567890123456789\n/);
      const ski = ca().cert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId;
      expect(text).toMatch(new RegExp(`X509v3 Authority Key Identifier: *\\n\\s+(keyid:)?${colonHex(ski)}\\n`));
      expect(text).not.toMatch(/Authority Key Identifier: critical|CRL Number: critical/);

      const blocks = entryBlocks(text);
      expect([...blocks.keys()]).toEqual(entries.map((e) => e.serial.toUpperCase()));
      expect(blocks.get("1A2B3C")).toMatch(/Revocation Date: Mar  4 05:06:07 2025 GMT/);
      expect(blocks.get("1A2B3C")).toMatch(/CRL Reason Code: *\n\s+Key Compromise\n/);
      expect(blocks.get("1A2B3C")).toMatch(/Invalidity Date: *\n\s+Mar  1 00:00:00 2025 GMT/);
      expect(blocks.get("2B3C4D")).toMatch(/CRL Reason Code: *\n\s+Superseded/);
      expect(blocks.get("2B3C4D")).not.toContain("Invalidity Date");
      // No reason, and reason 0 (unspecified): no reasonCode extension at all.
      expect(blocks.get("3C4D5E")).not.toContain("CRL entry extensions");
      expect(blocks.get("4D5E6F")).not.toContain("CRL entry extensions");
      expect(blocks.get("5E6F70")).toMatch(/Cessation Of Operation/);
      expect(blocks.get("6F7081")).toMatch(/CA Compromise/);
      expect(blocks.get("708192")).toMatch(/Affiliation Changed/);
      expect(blocks.get("8192A3")).toMatch(/Certificate Hold/);
      expect(blocks.get("92A3B4")).toMatch(/Privilege Withdrawn/);
      expect(blocks.get("A3B4C5")).toMatch(/AA Compromise/);

      expect(crlVerify(crl, ca())).toContain("verify OK");

      // The issuer is the CA's subject byte for byte; the algorithm identifier is the same in both places.
      const { fields, outer } = crlFields(crl);
      expect(fields.map((f) => f.tag)).toEqual([0x02, 0x30, 0x30, 0x17, 0x17, 0x30, 0xa0]);
      expect(bytesOf(crl, fields[0]!)).toBe("020101");
      expect(bytesOf(crl, fields[2]!)).toBe(subjectDer(ca().cert));
      expect(bytesOf(crl, fields[1]!)).toBe(hex(signatureAlgorithmDer(algorithm)));
      expect(bytesOf(crl, outer[1]!)).toBe(hex(signatureAlgorithmDer(algorithm)));

      // An independent parser agrees, and checks the signature in software.
      const parsed = new x509.X509Crl(crl);
      expect(parsed.entries.map((e) => e.serialNumber.toLowerCase())).toEqual(entries.map((e) => e.serial));
      expect(parsed.entries.map((e) => e.reason ?? 0)).toEqual(entries.map((e) => e.reason ?? 0));
      expect(parsed.entries[0]!.invalidity?.toISOString()).toBe("2025-03-01T00:00:00.000Z");
      expect(await parsed.verify({ publicKey: ca().cert })).toBe(true);
    });

    it("makes openssl verify -crl_check reject a revoked leaf and accept one that is not", async () => {
      const revoked = await issueLeaf(ca(), "revoked.example.test");
      const good = await issueLeaf(ca(), "good.example.test");
      const crl = await buildCrl(
        crlInput(ca(), { entries: [{ serial: revoked.serial, revokedAt: minutesAgo(2), reason: CRL_REASON.keyCompromise }] }),
      );
      const bad = verifyWithCrl(ca(), crl, revoked.cert);
      expect(bad.ok).toBe(false);
      expect(bad.output).toMatch(/certificate revoked/);
      const ok = verifyWithCrl(ca(), crl, good.cert);
      expect(ok.output).toMatch(/: OK/);
      expect(ok.ok).toBe(true);
      // Without any CRL, -crl_check fails: the acceptance above is the CRL's doing.
      const none = run("openssl", ["verify", "-crl_check", "-CAfile", ca().pemFile, write("leaf.pem", pemOf(good.cert))]);
      expect(none.ok).toBe(false);
      expect(none.output).toMatch(/unable to get certificate CRL/);
    });

    it("is valid with no entries at all (revokedCertificates left out)", async () => {
      const crl = await buildCrl(crlInput(ca(), { entries: [] }));
      const text = crlText(crl);
      expect(text).toContain("No Revoked Certificates.");
      expect(crlVerify(crl, ca())).toContain("verify OK");
      expect(crlFields(crl).fields.map((f) => f.tag)).toEqual([0x02, 0x30, 0x30, 0x17, 0x17, 0xa0]);
      const good = await issueLeaf(ca(), "empty.example.test");
      expect(verifyWithCrl(ca(), crl, good.cert).ok).toBe(true);
    });

    it("marks delta CRLs with a critical Delta CRL Indicator, and full ones with Freshest CRL", async () => {
      const delta = await buildCrl(
        crlInput(ca(), {
          crlNumber: 43n,
          deltaOf: 41n,
          entries: [
            { serial: "0abc", revokedAt: minutesAgo(3), reason: CRL_REASON.removeFromCRL },
            { serial: "0def", revokedAt: minutesAgo(3), reason: CRL_REASON.keyCompromise },
          ],
        }),
      );
      const dText = crlText(delta);
      expect(dText).toMatch(/X509v3 Delta CRL Indicator: critical *\n\s+41\n/);
      expect(dText).toMatch(/X509v3 CRL Number: *\n\s+43\n/);
      expect(dText).toMatch(/Remove From CRL/);
      expect(dText).not.toContain("Freshest CRL");
      expect(crlVerify(delta, ca())).toContain("verify OK");
      expect(new x509.X509Crl(delta).getExtension("2.5.29.27")?.critical).toBe(true);

      const full = await buildCrl(crlInput(ca(), { freshestCrlUrl: "http://crl.example.test/ca/delta.crl", entries: [{ serial: "0def", revokedAt: minutesAgo(3) }] }));
      const fText = crlText(full);
      expect(fText).toMatch(/X509v3 Freshest CRL: *\n\s+Full Name:\n\s+URI:http:\/\/crl\.example\.test\/ca\/delta\.crl\n/);
      expect(fText).not.toMatch(/Freshest CRL: critical/);
      expect(fText).not.toContain("Delta CRL Indicator");
      expect(crlVerify(full, ca())).toContain("verify OK");
    });

    it("scopes a CRL with a critical Issuing Distribution Point that must equal the certificate's CRL DP", async () => {
      const U = `http://crl.example.test/${algorithm}/full.crl`;
      const V = `http://crl.example.test/${algorithm}/other.crl`;
      const leaf = await issueLeafWithCdp(ca(), "cdp.example.test", U);
      expect(leaf.cert.getExtension(x509.CRLDistributionPointsExtension)).toBeTruthy();

      const matching = await buildCrl(crlInput(ca(), { issuingDistributionPoint: { url: U, onlyContainsUserCerts: true }, entries: [{ serial: "0123", revokedAt: minutesAgo(2) }] }));
      const text = crlText(matching);
      expect(text).toMatch(new RegExp(`X509v3 Issuing Distribution Point: critical *\\n\\s+Full Name:\\n\\s+URI:${U.replace(/\./g, "\\.")}`));
      expect(text).toContain("Only User Certificates");
      expect(crlVerify(matching, ca())).toContain("verify OK");
      const accepted = verifyWithCrl(ca(), matching, leaf.cert);
      expect(accepted.output).toMatch(/: OK/);
      expect(accepted.ok).toBe(true);

      const revoking = await buildCrl(crlInput(ca(), { issuingDistributionPoint: { url: U }, entries: [{ serial: leaf.serial, revokedAt: minutesAgo(2), reason: CRL_REASON.superseded }] }));
      const rejected = verifyWithCrl(ca(), revoking, leaf.cert);
      expect(rejected.ok).toBe(false);
      expect(rejected.output).toMatch(/certificate revoked/);

      // Another URL: openssl does not take the CRL as covering this certificate.
      const elsewhere = await buildCrl(crlInput(ca(), { issuingDistributionPoint: { url: V }, entries: [] }));
      const outOfScope = verifyWithCrl(ca(), elsewhere, leaf.cert);
      expect(outOfScope.ok).toBe(false);
      expect(outOfScope.output).toMatch(/unable to get certificate CRL|different CRL scope/);
      // So does a CA-certificates-only CRL for a leaf.
      const caOnly = await buildCrl(crlInput(ca(), { issuingDistributionPoint: { url: U, onlyContainsCACerts: true }, entries: [] }));
      expect(crlText(caOnly)).toContain("Only CA Certificates");
      expect(verifyWithCrl(ca(), caOnly, leaf.cert).ok).toBe(false);
    });

    it("encodes serials with the high bit set so that openssl prints them unchanged", async () => {
      const serials = ["80", "ff", "8000000000000001", "ff".repeat(20), "f" + "0".repeat(39), "7f".repeat(16), "0123"];
      const input = crlInput(ca(), { entries: serials.map((serial) => ({ serial, revokedAt: minutesAgo(2) })) });
      // A 20-byte serial with the high bit set is 21 octets of INTEGER: the lint gate refuses it (RFC 5280 §4.1.2.2)...
      await expect(buildCrl(input)).rejects.toMatchObject({ kind: "lint-failed", rule: "crl-entry-serial" });
      // ...so the writer's encoding is checked with the gate off.
      setLintEnabled(false);
      const crl = await buildCrl(input).finally(() => setLintEnabled(true));
      expect([...entryBlocks(crlText(crl)).keys()]).toEqual(serials.map((s) => s.toUpperCase()));
      expect(crlVerify(crl, ca())).toContain("verify OK");
      expect(new x509.X509Crl(crl).entries.map((e) => e.serialNumber.toLowerCase().replace(/^0+/, ""))).toEqual(serials.map((s) => s.replace(/^0+/, "")));
      expect(hex(crl)).toContain("0215" + "00" + "ff".repeat(20)); // 21 content bytes
    });

    it("uses GeneralizedTime from 2050 on, which openssl reads", async () => {
      const good = await issueLeaf(ca(), "late.example.test");
      const crl = await buildCrl(
        crlInput(ca(), {
          nextUpdate: new Date("2050-06-01T00:00:00Z"),
          entries: [{ serial: "0abc", revokedAt: new Date("2050-01-01T00:00:00Z"), invalidityDate: new Date("1949-12-31T23:59:59Z") }],
        }),
      );
      const text = crlText(crl);
      expect(text).toContain("Next Update: Jun  1 00:00:00 2050 GMT");
      expect(text).toContain("Revocation Date: Jan  1 00:00:00 2050 GMT");
      expect(text).toMatch(/Invalidity Date: *\n\s+Dec 31 23:59:59 1949 GMT/);
      const { fields } = crlFields(crl);
      expect(fields[3]!.tag).toBe(0x17); // thisUpdate: now, UTCTime
      expect(fields[4]!.tag).toBe(0x18); // nextUpdate: 2050, GeneralizedTime
      expect(crlVerify(crl, ca())).toContain("verify OK");
      expect(verifyWithCrl(ca(), crl, good.cert).ok).toBe(true);
    });

    it("writes the same tbsCertList from an array and from a generator (spanning several 1 MiB chunks)", async () => {
      const entries = randomEntries(40_000);
      const input = crlInput(ca(), { thisUpdate: new Date("2026-01-01T00:00:00Z"), nextUpdate: new Date("2026-01-08T00:00:00Z") });
      const fromArray = await buildCrl({ ...input, entries });
      const fromGenerator = await buildCrl({
        ...input,
        entries: (function* () {
          yield* entries;
        })(),
      });
      const tbs = (crl: Uint8Array) => hex(crl.subarray(crlFields(crl).tbs.start, crlFields(crl).tbs.end));
      expect(fromArray.length).toBeGreaterThan(2 << 20);
      expect(tbs(fromGenerator)).toBe(tbs(fromArray));
      // RSA PKCS#1 v1.5 is deterministic: the whole CRL is the same.
      if (algorithm.startsWith("rsa")) expect(hex(fromGenerator)).toBe(hex(fromArray));
      expect(crlVerify(fromGenerator, ca())).toContain("verify OK");
      // The returned view covers exactly the CRL.
      expect(readTlv(fromGenerator, 0).end).toBe(fromGenerator.length);
    });
  });
}

describe("CRL input checks", () => {
  const ca = () => cas.get("ecdsa-p256")!;
  const entry = (more: Partial<CrlEntry> = {}): CrlEntry => ({ serial: "01", revokedAt: minutesAgo(1), ...more });

  it("refuses what RFC 5280 does not allow", async () => {
    await expect(buildCrl(crlInput(ca(), { nextUpdate: minutesAgo(1) }))).rejects.toThrow(/nextUpdate .* is not after thisUpdate/);
    await expect(buildCrl(crlInput(ca(), { crlNumber: -1n }))).rejects.toThrow(/non-negative/);
    await expect(buildCrl(crlInput(ca(), { crlNumber: 1n << 159n }))).rejects.toThrow(/20 octets/);
    await expect(buildCrl(crlInput(ca(), { crlNumber: 5n, deltaOf: 5n }))).rejects.toThrow(/above its base/);
    await expect(buildCrl(crlInput(ca(), { crlNumber: 5n, deltaOf: 4n, freshestCrlUrl: "http://x/d.crl" }))).rejects.toThrow(/Freshest CRL/);
    await expect(buildCrl(crlInput(ca(), { entries: [entry({ reason: 8 })] }))).rejects.toThrow(/removeFromCRL only belongs in delta CRLs/);
    await expect(buildCrl(crlInput(ca(), { entries: [entry(), entry({ reason: 7 })] }))).rejects.toThrow(/entry 1 .*7 is not a CRL reason code/);
    await expect(buildCrl(crlInput(ca(), { entries: [entry({ reason: 11 })] }))).rejects.toThrow(/not a CRL reason code/);
    await expect(buildCrl(crlInput(ca(), { entries: [entry({ serial: "xyz" })] }))).rejects.toThrow(/entry 0: serial "xyz" is not hex/);
    await expect(buildCrl(crlInput(ca(), { entries: [entry({ serial: "12zz" })] }))).rejects.toThrow(/is not hex/);
    await expect(buildCrl(crlInput(ca(), { entries: [entry({ serial: "" })] }))).rejects.toThrow(/no serial/);
    await expect(buildCrl(crlInput(ca(), { entries: [entry({ revokedAt: new Date("x") })] }))).rejects.toThrow(/entry 0 .*not a valid date/);
    await expect(buildCrl(crlInput(ca(), { entries: [entry({ invalidityDate: new Date("x") })] }))).rejects.toThrow(/not a valid date/);
    await expect(buildCrl(crlInput(ca(), { issuingDistributionPoint: { url: "http://x/a b.crl" } }))).rejects.toThrow(/printable ASCII/);
    await expect(buildCrl(crlInput(ca(), { issuingDistributionPoint: { url: "http://x/a.crl", onlyContainsCACerts: true, onlyContainsUserCerts: true } }))).rejects.toThrow(/both/);
    // The same checks on the generator path.
    await expect(buildCrl(crlInput(ca(), { entries: new Set([entry({ reason: 7 })]) }))).rejects.toThrow(/not a CRL reason code/);
  });
});

describe("a CRL with 100,000 entries", () => {
  it("builds in a few seconds and openssl counts every entry", async () => {
    const ca = cas.get("ecdsa-p256")!;
    const entries = randomEntries(100_000);
    const rssBefore = process.memoryUsage().rss;
    const started = performance.now();
    const crl = await buildCrl(crlInput(ca, { entries, crlNumber: 100_000n }));
    const ms = performance.now() - started;
    const rssAfter = process.memoryUsage().rss;
    console.log(`100k-entry CRL: ${crl.length} bytes in ${ms.toFixed(0)} ms; RSS ${(rssBefore / 1e6).toFixed(0)} -> ${(rssAfter / 1e6).toFixed(0)} MB`);
    expect(ms).toBeLessThan(5_000);
    const file = write("big.der", crl);
    const count = run("sh", ["-c", `openssl crl -inform DER -in '${file}' -noout -text | grep -c "Serial Number"`]);
    expect(count.output.trim()).toBe("100000");
    expect(crlVerify(crl, ca)).toContain("verify OK");
  }, 120_000);
});

/** Entries like the CA's: 127-bit serials, a mix of reasons, some invalidity dates. */
function randomEntries(n: number): CrlEntry[] {
  const reasons = [0, 1, 1, 3, 4, 5, 4, 9];
  const base = Date.UTC(2025, 0, 1);
  return Array.from({ length: n }, (_, i) => ({
    serial: newSerial(),
    revokedAt: new Date(base + i * 1000),
    reason: reasons[i % reasons.length],
    invalidityDate: i % 5 === 0 ? new Date(base + i * 1000 - 86_400_000) : undefined,
  }));
}
