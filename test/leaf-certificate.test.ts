import crypto from "node:crypto";
import fs from "node:fs";
import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate } from "@peculiar/asn1-x509";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildRootCertificate } from "../src/ca/ca-certificate.ts";
import { revocationExtensions, type RevocationPointers } from "../src/ca/revocation-pointers.ts";
import { buildLeafCertificate } from "../src/ca/leaf-certificate.ts";
import { ipAddressBytes } from "../src/ca/subject-alt-name.ts";
import { pemOf } from "../src/asn1/pem.ts";
import { newSerial } from "../src/ca/serial.ts";
import type { Signer } from "../src/hsm/key-manager.ts";
import { loadConfig } from "../src/config.ts";
import { Hsm } from "../src/hsm/hsm.ts";
import type { CaKeyAlgorithm } from "../src/hsm/key-algorithms.ts";
import { asWebCrypto } from "../src/hsm/signing-crypto.ts";
import type { Decision } from "../src/policy/decide.ts";
import { tempDir, verify } from "./helpers/openssl.ts";

// The hand-assembled leaf encoder must write exactly the TBSCertificate that
// @peculiar/x509's generator writes for the same decision (the oracle below is
// the project's former encoder), and certificates openssl accepts.

const dataDir = tempDir("hsmca-leaf-");
const config = loadConfig({ HSM_CA_DATA_DIR: dataDir });
let hsm: Hsm;
interface Ca {
  algorithm: CaKeyAlgorithm;
  signer: Signer;
  cert: x509.X509Certificate;
}
const cas: Ca[] = [];
const HOUR = 3600_000;

beforeAll(async () => {
  hsm = Hsm.open(config.hsm, dataDir);
  for (const algorithm of ["ecdsa-p256", "ecdsa-p384", "rsa-2048"] as CaKeyAlgorithm[]) {
    const label = `leaf-test/${algorithm}`;
    const key = await hsm.generateKey(label, algorithm);
    const signer = hsm.signer(label, algorithm);
    const cert = await buildRootCertificate({
      pathLength: 1,
      subject: `CN=Leaf Test CA ${algorithm}, O=hsm-ca tests, C=DE`,
      spki: key.spki,
      serial: newSerial(),
      notBefore: new Date(Date.now() - HOUR),
      notAfter: new Date(Date.now() + 40 * 365 * 24 * HOUR),
      signer,
    });
    cas.push({ algorithm, signer, cert });
  }
}, 120_000);

afterAll(() => {
  hsm?.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** The former encoder: @peculiar/x509's generator with the same extensions in the same order. */
async function oracle(ca: Ca, decision: Decision, spki: ArrayBuffer, serial: string, revocation?: RevocationPointers): Promise<x509.X509Certificate> {
  const publicKey = new x509.PublicKey(spki);
  const keyUsage = decision.keyUsage.reduce((flags, u) => flags | x509.KeyUsageFlags[u], 0);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(keyUsage, true),
    new x509.ExtendedKeyUsageExtension(decision.extendedKeyUsage, false),
    await x509.SubjectKeyIdentifierExtension.create(publicKey, false, globalThis.crypto),
    new x509.AuthorityKeyIdentifierExtension(ca.cert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId, false),
  ];
  if (decision.sans.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(decision.sans, decision.sanCritical));
  if (revocation) extensions.push(...revocationExtensions(revocation));
  return ca.signer.use((signingKey, c) =>
    x509.X509CertificateGenerator.create(
      {
        serialNumber: serial,
        subject: new x509.Name(decision.subject.map(([attr, value]) => ({ [attr]: [value] }))),
        issuer: ca.cert.subjectName,
        notBefore: decision.notBefore,
        notAfter: decision.notAfter,
        publicKey,
        signingKey,
        signingAlgorithm: ca.signer.signingAlgorithm,
        extensions,
      },
      asWebCrypto(c),
    ),
  );
}

function tbsHex(der: ArrayBuffer | Uint8Array): string {
  return Buffer.from(AsnConvert.serialize(AsnConvert.parse(der, Certificate).tbsCertificate)).toString("hex");
}

function spkiOf(kind: "p256" | "p384" | "rsa" | "ed25519"): ArrayBuffer {
  const { publicKey } =
    kind === "rsa"
      ? crypto.generateKeyPairSync("rsa", { modulusLength: 2048 })
      : kind === "ed25519"
        ? crypto.generateKeyPairSync("ed25519")
        : crypto.generateKeyPairSync("ec", { namedCurve: kind === "p256" ? "P-256" : "P-384" });
  return new Uint8Array(publicKey.export({ format: "der", type: "spki" })).buffer;
}

const base: Decision = {
  subject: [["CN", "svc.example.test"]],
  sans: [{ type: "dns", value: "svc.example.test" }],
  sanCritical: false,
  keyUsage: ["digitalSignature"],
  extendedKeyUsage: ["1.3.6.1.5.5.7.3.1"],
  notBefore: new Date(Date.now() - 60_000 + 123),
  notAfter: new Date(Date.now() + 24 * HOUR + 456),
};

const pointers: RevocationPointers = {
  crlUrl: "http://127.0.0.1:8080/crl/3/0.crl",
  ocspUrl: "http://127.0.0.1:8080/ocsp",
  caIssuersUrl: "http://127.0.0.1:8080/ca/3.der",
};

const CASES: Array<{ name: string; decision: Decision; key: "p256" | "p384" | "rsa" | "ed25519"; revocation?: RevocationPointers }> = [
  { name: "a TLS server certificate with CRL and OCSP pointers", decision: base, key: "p256", revocation: pointers },
  {
    name: "a full subject, UTF-8 and printable values, several SAN kinds",
    key: "p384",
    decision: {
      ...base,
      subject: [["C", "DE"], ["ST", "Baden-Württemberg"], ["L", "Karlsruhe"], ["O", "Example & Co, Ltd"], ["OU", "Platform"], ["CN", "api.example.test"]],
      sans: [
        { type: "dns", value: "api.example.test" },
        { type: "dns", value: "*.api.example.test" },
        { type: "ip", value: "10.1.2.3" },
        { type: "ip", value: "2001:db8::1" },
        { type: "ip", value: "::1" },
        { type: "ip", value: "fe80::1:2:3:4" },
        { type: "email", value: "ops@example.test" },
      ],
      // No keyEncipherment: a P-384 key cannot encrypt, and the lint gate refuses it (docs/lint.md).
      keyUsage: ["digitalSignature", "keyAgreement"],
      extendedKeyUsage: ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"],
    },
  },
  {
    name: "an X.509-SVID: empty subject, one critical URI SAN",
    key: "p256",
    decision: { ...base, subject: [], sans: [{ type: "url", value: "spiffe://example.org/ns/default/sa/web" }], sanCritical: true, extendedKeyUsage: ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"] },
    revocation: pointers,
  },
  { name: "an RSA subject key with keyEncipherment", key: "rsa", decision: { ...base, keyUsage: ["digitalSignature", "keyEncipherment"] } },
  { name: "an Ed25519 subject key, code signing", key: "ed25519", decision: { ...base, sans: [], subject: [["O", "Example"], ["CN", "Release signing"]], extendedKeyUsage: ["1.3.6.1.5.5.7.3.3"] } },
  { name: "validity past 2049 (GeneralizedTime)", key: "p256", decision: { ...base, notAfter: new Date("2051-03-04T05:06:07.890Z") } },
  { name: "long SAN lists (multi-byte DER lengths)", key: "p256", decision: { ...base, sans: Array.from({ length: 40 }, (_, i) => ({ type: "dns" as const, value: `host-${i}.a-rather-long-service-name.example.test` })) } },
];

describe("hand-assembled leaf certificates", () => {
  for (const c of CASES) {
    it(`writes the same TBSCertificate as @peculiar/x509 for ${c.name}`, async () => {
      for (const ca of cas) {
        const spki = spkiOf(c.key);
        const serial = newSerial();
        const leaf = await buildLeafCertificate({ decision: c.decision, spki, serial, issuer: ca.cert, signer: ca.signer, algorithm: ca.algorithm, revocation: c.revocation });
        const expected = await oracle(ca, c.decision, spki, serial, c.revocation);
        expect(tbsHex(leaf.der), `${ca.algorithm}`).toBe(tbsHex(expected.rawData));
        const parsed = new x509.X509Certificate(leaf.der);
        expect(parsed.subject).toBe(leaf.subject);
        expect(parsed.subject).toBe(expected.subject);
        expect(parsed.notBefore.getTime()).toBe(leaf.notBefore.getTime());
        expect(parsed.notAfter.getTime()).toBe(leaf.notAfter.getTime());
        expect(parsed.toString("pem").trim()).toBe(leaf.pem.trim());
        expect(await parsed.verify({ publicKey: ca.cert.publicKey, signatureOnly: true })).toBe(true);
      }
    });
  }

  it("makes certificates openssl verifies against the issuer", async () => {
    for (const ca of cas) {
      const leaf = await buildLeafCertificate({ decision: base, spki: spkiOf("p256"), serial: newSerial(), issuer: ca.cert, signer: ca.signer, algorithm: ca.algorithm, revocation: pointers });
      const r = verify(pemOf(ca.cert), pemOf(ca.cert), leaf.pem, ["-purpose", "sslserver"]);
      expect(r.output, ca.algorithm).toMatch(/: OK/);
    }
  });

  it("encodes IP addresses as x509 does, v4 and v6 in every written form", () => {
    for (const ip of ["0.0.0.0", "255.255.255.255", "::", "::1", "1::", "2001:db8:0:0:1:0:0:1", "2001:DB8::8:800:200C:417A"]) {
      const ext = new x509.SubjectAlternativeNameExtension([{ type: "ip", value: ip }]);
      const bytes = Buffer.from(ipAddressBytes(ip));
      // GeneralNames ::= SEQUENCE { iPAddress [7] OCTET STRING }
      const ours = Buffer.concat([Buffer.of(0x30, bytes.length + 2, 0x87, bytes.length), bytes]);
      expect(ours.toString("hex"), ip).toBe(Buffer.from(ext.value).toString("hex"));
      expect(bytes.length).toBe(ip.includes(":") ? 16 : 4);
    }
    // IPv6 with an embedded IPv4 tail (RFC 4291 §2.2): @peculiar/x509 gets these
    // wrong (it writes 0000ffff0192... for ::ffff:192.0.2.128), so the expected bytes are spelt out.
    expect(Buffer.from(ipAddressBytes("::ffff:192.0.2.128")).toString("hex")).toBe("00000000000000000000ffffc0000280");
    expect(Buffer.from(ipAddressBytes("64:ff9b::10.0.0.1")).toString("hex")).toBe("0064ff9b00000000000000000a000001");
  });
});
