/**
 * parseCsr walks the DER itself and checks signatures with node:crypto.
 * These tests hold it to what the @peculiar/x509 + WebCrypto parser it
 * replaced gave (test/helpers/csr-oracle.ts), for CSRs from real openssl,
 * from @peculiar/x509 and built by hand for the corners, and pin down the
 * few places where it is deliberately stricter.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import * as x509 from "@peculiar/x509";
import { describe, expect, it } from "vitest";
import { parseCsr } from "../src/csr/parse-csr.ts";
import { contextTag, NULL, octetString, oid, sequence, tlv } from "../src/asn1/der-writer.ts";
import { TAG } from "../src/asn1/tags.ts";
import { derToPem } from "../src/asn1/pem.ts";
import { Rejection } from "../src/errors.ts";
import { sanProblem } from "../src/policy/decide.ts";
import { loadProfiles } from "../src/policy/profiles.ts";
import { outcomeOfNew, outcomeOfOracle } from "./helpers/csr-oracle.ts";
import { derOfPem, mutate, Rng } from "./helpers/fuzz.ts";
import { REPO } from "./helpers/cli.ts";
import { makeKey, openssl, tempDir, type KeySpec } from "./helpers/openssl.ts";

const pemOf = (der: Uint8Array) => derToPem(der, "CERTIFICATE REQUEST");

async function expectSameAsOracle(pem: string) {
  const [now, before] = await Promise.all([outcomeOfNew(pem), outcomeOfOracle(pem)]);
  expect(now).toEqual(before);
  return now;
}

async function expectRefused(pem: string, kind: string) {
  await expect(parseCsr(pem)).rejects.toSatisfy((err) => err instanceof Rejection && err.kind === kind);
}

// ---------------------------------------------------------------------------
// Real openssl

interface OpensslCsr {
  key?: KeySpec;
  subject?: string;
  san?: string;
  /** Extra `openssl req` arguments: -sigopt, -sha384, -utf8, -multivalue-rdn... */
  args?: string[];
  /** Extra config sections (for dirName SANs). */
  config?: string;
}

function opensslCsr({ key = "ec-p256", subject = "/CN=app.example.test", san, args = [], config }: OpensslCsr): string {
  const dir = tempDir("csr-parse-");
  try {
    fs.writeFileSync(path.join(dir, "key.pem"), makeKey(key));
    const conf = ["[req]", "distinguished_name = dn", "[dn]", ...(san ? ["[ext]", `subjectAltName = ${san}`] : []), config ?? ""].join("\n");
    fs.writeFileSync(path.join(dir, "req.cnf"), conf);
    return openssl(["req", "-new", "-config", path.join(dir, "req.cnf"), "-key", path.join(dir, "key.pem"), "-subj", subject, ...(san ? ["-reqexts", "ext"] : []), ...args]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe("parseCsr agrees with the x509-based parser on openssl CSRs", () => {
  const FULL_SUBJECT = "/C=DE/ST=Berlin/L=Berlin/O=Example GmbH/OU=Ops/OU=Dev/CN=app.example.test/emailAddress=ops@example.test";
  it.each<[string, OpensslCsr]>([
    ["P-256, CN only", { key: "ec-p256" }],
    ["P-384, SHA-384", { key: "ec-p384", args: ["-sha384"] }],
    ["P-256 signed with SHA-512", { key: "ec-p256", args: ["-sha512"] }],
    ["RSA 2048, PKCS#1 v1.5", { key: "rsa-2048", san: "DNS:app.example.test" }],
    ["RSA 3072, SHA-384", { key: "rsa-3072", args: ["-sha384"] }],
    ["RSA 2048, PSS, salt = digest length", { key: "rsa-2048", args: ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"] }],
    ["RSA 2048, PSS SHA-512, salt 0", { key: "rsa-2048", args: ["-sha512", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:0"] }],
    ["RSA 2048, PSS, maximal salt", { key: "rsa-2048", args: ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:max"] }],
    ["Ed25519", { key: "ed25519", san: "DNS:app.example.test" }],
    ["a full subject with two OUs and an email address", { subject: FULL_SUBJECT }],
    ["a UTF-8 subject", { subject: "/O=Bäckerei Müller/OU=Ünïcödé ☃/CN=straße.example.test", args: ["-utf8"] }],
    ["a multi-valued RDN", { subject: "/O=Example+OU=Ops/CN=app.example.test", args: ["-multivalue-rdn"] }],
    ["characters x509 escapes", { subject: "/O=Foo\\, Inc; <x> \"q\" \\\\ #1 /CN=#lead" }],
    ["DC components", { subject: "/DC=test/DC=example/CN=app" }],
    ["an empty subject with a SAN", { subject: "/", san: "DNS:app.example.test" }],
    ["SANs of every common kind", { san: "DNS:app.example.test,DNS:*.example.test,IP:10.1.2.3,IP:::1,IP:fd00::1,IP:2001:db8:0:0:1:0:0:1,IP:2001:DB8::A:0:0:0,IP:0:0:0:0:0:0:0:0,IP:1:0:0:0:0:0:0:0,email:ops@example.test,URI:spiffe://example.org/ns/a/sa/b" }],
    ["a dirName SAN", { san: "dirName:dir_sect", config: "[dir_sect]\nC = DE\nO = Example, Inc.\nCN = dir name" }],
    ["a registeredID SAN", { san: "RID:1.2.3.4.5, DNS:app.example.test" }],
    ["a UPN otherName SAN", { san: "otherName:1.3.6.1.4.1.311.20.2.3;UTF8:user@example.test" }],
  ])("%s", async (_name, opts) => {
    const outcome = await expectSameAsOracle(opensslCsr(opts));
    expect(outcome).not.toHaveProperty("refused");
  });

  it("the SAN list is the one written, IPs in x509's text form", async () => {
    const outcome = await expectSameAsOracle(opensslCsr({ san: "IP:0:0:0:0:0:0:0:1,IP:2001:0DB8:0000:0000:0000:0000:0000:0001,IP:192.168.001.010" }));
    expect(outcome).toMatchObject({ sans: [{ type: "ip", value: "::1" }, { type: "ip", value: "2001:db8::1" }, { type: "ip", value: "192.168.1.10" }] });
  });

  it.each<[string, KeySpec]>([
    ["P-521", "ec-p521"],
    ["secp256k1", "secp256k1"],
    ["RSA 1024", "rsa-1024"],
    ["Ed448", "ed448"],
  ])("%s -> bad-public-key for both", async (_name, key) => {
    expect(await expectSameAsOracle(opensslCsr({ key }))).toEqual({ refused: "bad-public-key" });
  });
});

// ---------------------------------------------------------------------------
// @peculiar/x509's generator

describe("parseCsr agrees with the x509-based parser on @peculiar/x509 CSRs", () => {
  const SANS: x509.JsonGeneralName[] = [
    { type: "dns", value: "app.example.test" },
    { type: "ip", value: "10.0.0.1" },
    { type: "ip", value: "fe80::1:2" },
    { type: "email", value: "ops@example.test" },
    { type: "url", value: "https://example.test/x" },
    { type: "dn", value: "CN=someone, O=Example" },
    { type: "guid", value: "6d7a3f2c-1b4e-4c8a-9f0d-2e5b7c9a1d3f" },
    { type: "upn", value: "user@example.test" },
    { type: "id", value: "1.2.3.4.5" },
  ];
  it.each<[string, EcKeyGenParams | RsaHashedKeyGenParams | Algorithm, Algorithm | RsaPssParams | EcdsaParams]>([
    ["P-256", { name: "ECDSA", namedCurve: "P-256" }, { name: "ECDSA", hash: "SHA-256" }],
    ["P-384", { name: "ECDSA", namedCurve: "P-384" }, { name: "ECDSA", hash: "SHA-384" }],
    ["RSA 2048 PKCS#1", { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) }, { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }],
    ["RSA 2048 PSS", { name: "RSA-PSS", hash: "SHA-256", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) }, { name: "RSA-PSS", hash: "SHA-256", saltLength: 32 } as RsaPssParams],
    ["Ed25519", { name: "Ed25519" }, { name: "Ed25519" }],
  ])("%s, with SANs of every kind x509 writes", async (_name, keyAlg, signingAlgorithm) => {
    const keys = (await crypto.webcrypto.subtle.generateKey(keyAlg as EcKeyGenParams, false, ["sign", "verify"])) as CryptoKeyPair;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: "C=DE, O=Example GmbH, OU=Ops, CN=app.example.test",
      keys,
      signingAlgorithm,
      extensions: [new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true), new x509.SubjectAlternativeNameExtension(SANS)],
      attributes: [new x509.ChallengePasswordAttribute("secret")],
    });
    const outcome = await expectSameAsOracle(csr.toString("pem"));
    expect(outcome).toMatchObject({ sans: expect.arrayContaining([{ type: "guid", value: "6d7a3f2c-1b4e-4c8a-9f0d-2e5b7c9a1d3f" }]) });
  });
});

// ---------------------------------------------------------------------------
// Built by hand, for the corners no tool writes

const OIDS = {
  ecPublicKey: "1.2.840.10045.2.1",
  p256: "1.2.840.10045.3.1.7",
  ecdsaSha256: "1.2.840.10045.4.3.2",
  ecdsaSha1: "1.2.840.10045.4.1",
  rsaSha256: "1.2.840.113549.1.1.11",
  rsaSha1: "1.2.840.113549.1.1.5",
  pss: "1.2.840.113549.1.1.10",
  mgf1: "1.2.840.113549.1.1.8",
  sha256: "2.16.840.1.101.3.4.2.1",
  ed25519: "1.3.101.112",
  extensionRequest: "1.2.840.113549.1.9.14",
  challengePassword: "1.2.840.113549.1.9.7",
  san: "2.5.29.17",
  keyUsage: "2.5.29.15",
};

type StringTag = "utf8" | "printable" | "teletex" | "ia5" | "bmp" | "universal" | "numeric" | "null" | "raw";
const STRING_TAGS: Record<Exclude<StringTag, "raw">, number> = { utf8: 0x0c, printable: 0x13, teletex: 0x14, ia5: 0x16, bmp: 0x1e, universal: 0x1c, numeric: 0x12, null: 0x05 };

function encodeString(kind: StringTag, value: string | Uint8Array): Uint8Array {
  if (value instanceof Uint8Array) return kind === "raw" ? value : tlv(STRING_TAGS[kind], value);
  switch (kind) {
    case "utf8":
      return tlv(STRING_TAGS.utf8, Buffer.from(value, "utf8"));
    case "bmp":
      return tlv(STRING_TAGS.bmp, Buffer.from(value, "utf16le").swap16());
    case "universal": {
      const codePoints = [...value].map((c) => c.codePointAt(0)!);
      const bytes = Buffer.alloc(codePoints.length * 4);
      codePoints.forEach((cp, i) => bytes.writeUInt32BE(cp, i * 4));
      return tlv(STRING_TAGS.universal, bytes);
    }
    case "null":
      return NULL;
    case "raw":
      throw new Error("raw takes bytes");
    default:
      return tlv(STRING_TAGS[kind], Buffer.from(value, "latin1"));
  }
}

/** A Name from RDNs, each a list of [OID, string type, value]. */
function name(...rdns: Array<Array<[string, StringTag, string | Uint8Array]>>): Uint8Array {
  return sequence(...rdns.map((rdn) => tlv(TAG.SET, ...rdn.map(([type, kind, value]) => sequence(oid(type), encodeString(kind, value))))));
}

const gn = {
  dns: (v: string) => tlv(0x82, Buffer.from(v, "latin1")),
  email: (v: string) => tlv(0x81, Buffer.from(v, "latin1")),
  uri: (v: string) => tlv(0x86, Buffer.from(v, "latin1")),
  ip: (bytes: number[]) => tlv(0x87, Uint8Array.from(bytes)),
  rid: (dotted: string) => {
    const o = oid(dotted);
    o[0] = 0x88;
    return o;
  },
  dirName: (n: Uint8Array) => contextTag(4, true, n),
  otherName: (type: string, value: Uint8Array) => contextTag(0, true, oid(type), contextTag(0, true, value)),
  x400: () => contextTag(3, true, sequence()),
  edi: () => contextTag(5, true, contextTag(1, true, encodeString("utf8", "party"))),
};

function extension(id: string, value: Uint8Array, critical = false): Uint8Array {
  return sequence(oid(id), ...(critical ? [Uint8Array.of(TAG.BOOLEAN, 1, 0xff)] : []), octetString(value));
}
const extensionRequest = (...extensions: Uint8Array[]) => sequence(oid(OIDS.extensionRequest), tlv(TAG.SET, sequence(...extensions)));
const sanExtension = (...names: Uint8Array[]) => extension(OIDS.san, sequence(...names));

interface HandCsr {
  subject?: Uint8Array;
  /** Attribute DERs; null leaves the [0] attributes field out altogether. */
  attributes?: Uint8Array[] | null;
  key?: "p256" | "rsa" | "ed25519";
  /** Signature AlgorithmIdentifier and how to sign; defaults fit the key. */
  signatureAlgorithm?: Uint8Array;
  sign?: (data: Buffer, key: crypto.KeyObject) => Buffer;
  /** Bytes after the CertificationRequest. */
  trailing?: Uint8Array;
  spki?: Uint8Array;
}

const handKeys = {
  p256: crypto.generateKeyPairSync("ec", { namedCurve: "P-256" }),
  rsa: crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }),
  ed25519: crypto.generateKeyPairSync("ed25519"),
};

const DEFAULT_SIGNING = {
  p256: { alg: sequence(oid(OIDS.ecdsaSha256)), sign: (d: Buffer, k: crypto.KeyObject) => crypto.sign("sha256", d, { key: k, dsaEncoding: "der" }) },
  rsa: { alg: sequence(oid(OIDS.rsaSha256), NULL), sign: (d: Buffer, k: crypto.KeyObject) => crypto.sign("sha256", d, k) },
  ed25519: { alg: sequence(oid(OIDS.ed25519)), sign: (d: Buffer, k: crypto.KeyObject) => crypto.sign(null, d, k) },
};

function handCsr({ subject = name([["2.5.4.3", "utf8", "app.example.test"]]), attributes = [], key = "p256", signatureAlgorithm, sign, trailing, spki }: HandCsr): string {
  const pair = handKeys[key];
  const publicKey = spki ?? pair.publicKey.export({ format: "der", type: "spki" });
  const info = sequence(Uint8Array.of(TAG.INTEGER, 1, 0), subject, publicKey, ...(attributes === null ? [] : [contextTag(0, true, ...attributes)]));
  const signature = (sign ?? DEFAULT_SIGNING[key].sign)(Buffer.from(info), pair.privateKey);
  const der = sequence(info, signatureAlgorithm ?? DEFAULT_SIGNING[key].alg, tlv(TAG.BIT_STRING, Uint8Array.of(0), signature));
  return pemOf(trailing ? Buffer.concat([der, trailing]) : der);
}

describe("parseCsr agrees with the x509-based parser on hand-built corners", () => {
  it.each<[string, Uint8Array]>([
    ["every string type", name(
      [["2.5.4.6", "printable", "DE"]],
      [["2.5.4.10", "teletex", "Caf\u00e9 T61"]],
      [["2.5.4.11", "bmp", "\u03a9mega"]],
      [["2.5.4.7", "universal", "Z\u00fcrich"]],
      [["1.2.840.113549.1.9.1", "ia5", "ops@example.test"]],
      [["2.5.4.3", "utf8", "caf\u00e9 \u2603 \u{1f600}"]],
    )],
    ["a type x509 does not decode (NumericString) and NULL", name([["2.5.4.5", "numeric", "12345"]], [["2.5.4.17", "null", ""]], [["2.5.4.3", "utf8", "x"]])],
    ["bytes that are not UTF-8 in a UTF8String", name([["2.5.4.3", "utf8", Uint8Array.of(0x61, 0xff, 0xfe, 0x62)]])],
    ["a UTF8String starting with a byte-order mark", name([["2.5.4.3", "utf8", "\ufeffbom"]])],
    ["characters that need escaping", name([["2.5.4.10", "utf8", 'a,b+c"d\\e<f>g;h']], [["2.5.4.11", "utf8", " lead"]], [["2.5.4.11", "utf8", "#hash"]], [["2.5.4.3", "utf8", "trail \n\tx\r"]])],
    ["multi-valued RDNs, an unknown attribute type and repeats", name([["2.5.4.10", "utf8", "A"], ["2.5.4.11", "utf8", "B"]], [["1.2.3.4", "utf8", "unknown"]], [["2.5.4.11", "utf8", "C"]], [["0.9.2342.19200300.100.1.25", "ia5", "test"]])],
    ["empty values", name([["2.5.4.10", "utf8", ""]], [["2.5.4.3", "ia5", ""]])],
    ["an empty subject", name()],
    ["an empty RDN", sequence(tlv(TAG.SET))],
    ["an empty RDN between two", sequence(tlv(TAG.SET, sequence(oid("2.5.4.10"), encodeString("utf8", "O"))), tlv(TAG.SET), tlv(TAG.SET, sequence(oid("2.5.4.3"), encodeString("utf8", "CN"))))],
  ])("subject: %s", async (_name, subject) => {
    await expectSameAsOracle(handCsr({ subject, attributes: [extensionRequest(sanExtension(gn.dns("a.example.test")))] }));
  });

  const v6 = (...groups: number[]) => groups.flatMap((g) => [g >> 8, g & 0xff]);
  it.each<[string, number[]]>([
    ["IPv4", [192, 0, 2, 1]],
    ["IPv4 0.0.0.0", [0, 0, 0, 0]],
    ["::", v6(0, 0, 0, 0, 0, 0, 0, 0)],
    ["::1", v6(0, 0, 0, 0, 0, 0, 0, 1)],
    ["1::", v6(1, 0, 0, 0, 0, 0, 0, 0)],
    ["a single zero group is not compressed", v6(1, 0, 1, 1, 1, 1, 1, 1)],
    ["equal zero runs: the first", v6(0x2001, 0xdb8, 0, 0, 1, 0, 0, 1)],
    ["the longer zero run", v6(0x2001, 0, 0, 1, 0, 0, 0, 1)],
    ["alternating zeros", v6(1, 0, 1, 0, 1, 0, 1, 0)],
    ["IPv4-mapped", v6(0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0201)],
    ["upper hex digits", v6(0xfe80, 0, 0, 0, 0xabcd, 0xef01, 0x2345, 0x6789)],
    ["IPv4 with a mask", [10, 0, 0, 0, 255, 255, 0, 0]],
    ["IPv6 with a mask", [...v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), ...v6(0xffff, 0xffff, 0, 0, 0, 0, 0, 0)]],
    ["all-zero 8 bytes", [0, 0, 0, 0, 0, 0, 0, 0]],
    ["five bytes", [1, 2, 3, 4, 5]],
    ["no bytes", []],
  ])("IP SAN: %s", async (_name, bytes) => {
    await expectSameAsOracle(handCsr({ attributes: [extensionRequest(sanExtension(gn.ip(bytes)))] }));
  });

  it.each<[string, Uint8Array[] | null]>([
    ["no [0] attributes at all", null],
    ["an empty [0]", []],
    ["a challengePassword and no extensions", [sequence(oid(OIDS.challengePassword), tlv(TAG.SET, encodeString("utf8", "pw")))]],
    ["the SAN after keyUsage, critical", [extensionRequest(extension(OIDS.keyUsage, Uint8Array.of(3, 2, 7, 0x80), true), sanExtension(gn.dns("a.example.test")), extension(OIDS.san, sequence(gn.dns("ignored.example.test"))))]],
    ["two extensionRequests: the first counts", [extensionRequest(sanExtension(gn.dns("first.example.test"))), extensionRequest(sanExtension(gn.dns("second.example.test")))]],
    ["an extensionRequest without values", [sequence(oid(OIDS.extensionRequest), tlv(TAG.SET))]],
    ["an empty SAN", [extensionRequest(sanExtension())]],
    ["SAN strings in Latin-1, a registeredID, a dirName", [extensionRequest(sanExtension(gn.dns("caf\u00e9.test"), gn.email("\u00e9@x.test"), gn.uri("urn:x:\u00ff"), gn.rid("1.3.6.1.4.1.99999.1"), gn.rid("2.999.0"), gn.dirName(name([["2.5.4.3", "utf8", "a+b"], ["2.5.4.10", "printable", "O"]], [["2.5.4.5", "numeric", "42"]]))))]],
    ["UPN and GUID otherNames", [extensionRequest(sanExtension(gn.otherName("1.3.6.1.4.1.311.20.2.3", encodeString("utf8", "u@example.test")), gn.otherName("1.3.6.1.4.1.311.25.1", octetString(Uint8Array.from({ length: 16 }, (_, i) => i * 17)))))]],
    ["a UPN that is a BMPString", [extensionRequest(sanExtension(gn.otherName("1.3.6.1.4.1.311.20.2.3", encodeString("bmp", "u@example.test"))))]],
  ])("attributes: %s", async (_name, attributes) => {
    await expectSameAsOracle(handCsr({ attributes }));
  });

  it.each(["rsa", "ed25519"] as const)("%s keys", async (key) => {
    await expectSameAsOracle(handCsr({ key, attributes: [extensionRequest(sanExtension(gn.dns("a.example.test")))] }));
  });

  it("PSS with explicit parameters and a 20-byte salt", async () => {
    const params = sequence(
      contextTag(0, true, sequence(oid(OIDS.sha256), NULL)),
      contextTag(1, true, sequence(oid(OIDS.mgf1), sequence(oid(OIDS.sha256), NULL))),
      contextTag(2, true, Uint8Array.of(TAG.INTEGER, 1, 20)),
    );
    const pem = handCsr({
      key: "rsa",
      signatureAlgorithm: sequence(oid(OIDS.pss), params),
      sign: (d, k) => crypto.sign("sha256", d, { key: k, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 20 }),
    });
    expect(await expectSameAsOracle(pem)).toMatchObject({ key: { type: "rsa", bits: 2048 } });
  });

  it("a signature algorithm of another family than the key (ECDSA OID, RSA key) -> bad-csr-signature for both", async () => {
    const pem = handCsr({ key: "rsa", signatureAlgorithm: sequence(oid(OIDS.ecdsaSha256)) });
    expect(await expectSameAsOracle(pem)).toEqual({ refused: "bad-csr-signature" });
  });

  it("a compressed P-256 point", async () => {
    const spki = Buffer.from(handKeys.p256.publicKey.export({ format: "der", type: "spki" }));
    const compressed = crypto.ECDH.convertKey(spki.subarray(spki.length - 65), "prime256v1", undefined, undefined, "compressed") as Buffer;
    const compressedSpki = sequence(sequence(oid(OIDS.ecPublicKey), oid(OIDS.p256)), tlv(TAG.BIT_STRING, Uint8Array.of(0), compressed));
    expect(await expectSameAsOracle(handCsr({ spki: compressedSpki }))).toMatchObject({ key: { type: "ecdsa", curve: "P-256" } });
  });

  it("an ECDSA point that is not on the curve -> refused by both", async () => {
    const spki = Buffer.from(handKeys.p256.publicKey.export({ format: "der", type: "spki" }));
    spki[spki.length - 1]! ^= 0x01;
    expect(await outcomeOfOracle(handCsr({ spki }))).toEqual({ refused: "bad-csr-signature" });
    // Now named for what it is: the key is broken, not the signature.
    expect(await outcomeOfNew(handCsr({ spki }))).toEqual({ refused: "bad-public-key" });
  });
});

// ---------------------------------------------------------------------------
// Where the new parser is deliberately stricter

describe("parseCsr is stricter than the x509-based parser where it should be", () => {
  it("bytes after the CertificationRequest -> bad-csr (x509 ignored them)", async () => {
    const pem = handCsr({ trailing: Uint8Array.of(0, 0) });
    expect(await outcomeOfOracle(pem)).not.toHaveProperty("refused");
    await expectRefused(pem, "bad-csr");
    await expectRefused(handCsr({ trailing: sequence() }), "bad-csr");
  });

  it.each<[string, Uint8Array, (d: Buffer, k: crypto.KeyObject) => Buffer]>([
    ["sha1WithRSAEncryption", sequence(oid(OIDS.rsaSha1), NULL), (d, k) => crypto.sign("sha1", d, k)],
    ["RSASSA-PSS with its SHA-1 defaults", sequence(oid(OIDS.pss), sequence()), (d, k) => crypto.sign("sha1", d, { key: k, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 20 })],
  ])("%s -> bad-csr-signature naming it (x509 accepted SHA-1)", async (algName, signatureAlgorithm, sign) => {
    const pem = handCsr({ key: "rsa", signatureAlgorithm, sign });
    expect(await outcomeOfOracle(pem)).not.toHaveProperty("refused");
    await expect(parseCsr(pem)).rejects.toMatchObject({ kind: "bad-csr-signature", detail: expect.stringMatching(algName.startsWith("sha1") ? /sha1WithRSAEncryption.*not supported/ : /RSASSA-PSS parameters/) });
  });

  const DROPPED = { sans: [{ type: "dns", value: "a.example.test" }] };
  it.each<[string, Uint8Array, string, object]>([
    ["an x400Address", gn.x400(), "x400Address", { refused: "bad-csr" }],
    ["an ediPartyName", gn.edi(), "ediPartyName", { refused: "bad-csr" }],
    ["an unknown otherName", gn.otherName("1.2.3.4", encodeString("utf8", "x")), "otherName 1.2.3.4", DROPPED],
    ["a GUID of 15 bytes", gn.otherName("1.3.6.1.4.1.311.25.1", octetString(new Uint8Array(15))), "otherName 1.3.6.1.4.1.311.25.1", DROPPED],
    ["a UPN that is an IA5String", gn.otherName("1.3.6.1.4.1.311.20.2.3", encodeString("ia5", "u@example.test")), "otherName 1.3.6.1.4.1.311.20.2.3", DROPPED],
  ])("a SAN with %s is listed as an \"other\" name, which policy refuses (x509 dropped it or refused the CSR)", async (_name, generalName, value, before) => {
    const pem = handCsr({ attributes: [extensionRequest(sanExtension(gn.dns("a.example.test"), generalName))] });
    expect(await outcomeOfOracle(pem)).toMatchObject(before);
    const csr = await parseCsr(pem);
    expect(csr.sans).toEqual([{ type: "dns", value: "a.example.test" }, { type: "other", value }]);
    const tlsServer = loadProfiles(path.join(REPO, "profiles")).get("tls-server")!;
    expect(sanProblem(tlsServer, csr.sans[1]!)).toMatch(/does not allow other names/);
  });

  it("a registeredID with an arc beyond 2^53 is written in decimal (x509 wrote hex in braces)", async () => {
    const uuidOid = "2.25.329800735698586629295641978511506172918";
    const pem = handCsr({ attributes: [extensionRequest(sanExtension(gn.rid(uuidOid)))] });
    expect(await outcomeOfOracle(pem)).toMatchObject({ sans: [{ type: "id", value: expect.stringMatching(/^2\.25\.\{[0-9a-f]+\}$/) }] });
    expect((await parseCsr(pem)).sans).toEqual([{ type: "id", value: uuidOid }]);
  });

  it("ecdsa-with-SHA1 -> bad-csr-signature", async () => {
    await expectRefused(handCsr({ signatureAlgorithm: sequence(oid(OIDS.ecdsaSha1)), sign: (d, k) => crypto.sign("sha1", d, { key: k, dsaEncoding: "der" }) }), "bad-csr-signature");
  });
});

// ---------------------------------------------------------------------------
// Refusals

describe("parseCsr refuses what is not a usable CSR, with the right kind", () => {
  const good = () => opensslCsr({ key: "ec-p256", san: "DNS:app.example.test" });

  it("a tampered signature -> bad-csr-signature", async () => {
    const der = derOfPem(good());
    der[der.length - 5]! ^= 0x40;
    await expectRefused(pemOf(der), "bad-csr-signature");
  });

  it("a tampered SAN -> bad-csr-signature", async () => {
    const der = Buffer.from(derOfPem(good()));
    der.write("evil", der.indexOf("app.example"), "latin1");
    await expectRefused(pemOf(der), "bad-csr-signature");
  });

  it("a wrong-curve key -> bad-public-key naming the curve", async () => {
    await expect(parseCsr(opensslCsr({ key: "ec-p521" }))).rejects.toMatchObject({ kind: "bad-public-key", detail: expect.stringContaining("P-521") });
  });

  it("RSA 1024 -> bad-public-key", async () => {
    await expect(parseCsr(opensslCsr({ key: "rsa-1024" }))).rejects.toMatchObject({ kind: "bad-public-key", detail: expect.stringContaining("1024") });
  });

  it("every truncation -> bad-csr (never another error)", async () => {
    const der = derOfPem(good());
    for (let n = 0; n < der.length; n++) await expectRefused(pemOf(der.subarray(0, n)), "bad-csr");
  });

  it.each<[string, (pem: string) => string]>([
    ["a character outside base64", (p) => p.replace(/\n(.)/, "\n!$1")],
    ["a dash inside the base64", (p) => p.replace(/\n(.)/, "\n-$1")],
    ["padding in the middle", (p) => p.replace(/\n(....)/, "\n$1==")],
    ["a missing END line", (p) => p.replace(/-----END[^]*/, "")],
    ["an END line for another label", (p) => p.replace("END CERTIFICATE REQUEST", "END PRIVATE KEY")],
  ])("PEM with %s -> bad-csr", async (_name, edit) => {
    await expect(parseCsr(edit(good()))).rejects.toMatchObject({ kind: "bad-csr", detail: expect.stringContaining("PKCS#10") });
  });

  it("megabytes of base64 -> bad-csr, quickly (no regex backtracking on the stack)", async () => {
    const started = Date.now();
    for (const body of ["A".repeat(4_000_000), "A".repeat(3_999_999) + "!", "AB==".repeat(1_000_000)]) {
      await expectRefused(`-----BEGIN CERTIFICATE REQUEST-----\n${body}\n-----END CERTIFICATE REQUEST-----\n`, "bad-csr");
    }
    await expectRefused("-----BEGIN CERTIFICATE REQUEST-----".repeat(100_000), "bad-csr");
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it.each<[string, unknown]>([
    ["a private key", makeKey("ec-p256")],
    ["an empty string", ""],
    ["not a string", 42],
    ["undefined", undefined],
  ])("%s -> bad-csr", async (_name, input) => {
    await expectRefused(input as string, "bad-csr");
  });
});

describe("PEM forms that are accepted", () => {
  const pem = opensslCsr({ key: "ed25519", san: "DNS:app.example.test" });
  it.each<[string, (p: string) => string]>([
    ["NEW CERTIFICATE REQUEST", (p) => p.replace(/CERTIFICATE REQUEST/g, "NEW CERTIFICATE REQUEST")],
    ["CRLF line ends", (p) => p.replace(/\n/g, "\r\n")],
    ["indented lines and blank lines", (p) => p.replace(/\n/g, "\n   \n\t")],
    ["all on one line", (p) => p.replace(/\n(?!-----END)/g, "").replace("-----END", "\n-----END")],
    ["text around the block", (p) => `Certificate Request:\n  Data: ...\n${p}\ntrailing words\n`],
    ["a private key block before it", (p) => makeKey("ec-p256") + p],
  ])("%s", async (_name, edit) => {
    expect((await parseCsr(edit(pem))).sans).toEqual([{ type: "dns", value: "app.example.test" }]);
  });
});

// ---------------------------------------------------------------------------
// Mutants of the fuzz seeds, both parsers

describe("parseCsr and the x509-based parser on mutated CSRs", () => {
  it("what parseCsr accepts, x509 accepted with the same result, and it is byte for byte a seed (strict DER)", async () => {
    const seeds = ["p256", "p384", "rsa2048", "ed25519", "many-sans", "spiffe"].map((n) => derOfPem(fs.readFileSync(path.join(REPO, "test/fixtures/fuzz", `${n}.csr`), "utf8")));
    const rng = new Rng(0xc5_2024);
    const pairs = new Map<string, number>();
    for (let i = 0; i < 1500; i++) {
      const k = rng.int(seeds.length);
      const pem = pemOf(mutate(seeds[k]!, rng, seeds).bytes);
      const [now, before] = await Promise.all([outcomeOfNew(pem), outcomeOfOracle(pem)]);
      if (!("refused" in now)) {
        expect(now).toEqual(before);
        expect(seeds.some((seed) => Buffer.from(seed).equals(derOfPem(pem)))).toBe(true);
      }
      const key = `${"refused" in before ? before.refused : "accepted"} -> ${"refused" in now ? now.refused : "accepted"}`;
      pairs.set(key, (pairs.get(key) ?? 0) + 1);
    }
    // Refusals may differ in kind (stricter DER, an off-curve point is now bad-public-key): shown, not pinned.
    console.log("x509 -> parseCsr on 1500 mutants:", Object.fromEntries(pairs));
  });
});
