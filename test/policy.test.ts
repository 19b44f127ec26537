import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import * as x509 from "@peculiar/x509";
import { describe, expect, it } from "vitest";
import { parseCsr, type ParsedCsr } from "../src/csr/parse-csr.ts";
import { Rejection } from "../src/errors.ts";
import { checkIdentifiers } from "../src/policy/acme-identifiers.ts";
import { decide, type DecideInput } from "../src/policy/decide.ts";
import { profileSchema, type Profile } from "../src/policy/profile-schema.ts";
import { loadAcmeProfiles, loadProfiles } from "../src/policy/profiles.ts";
import { makeCsr, makeKey, openssl, tempDir, type CsrOptions } from "./helpers/openssl.ts";

const profiles = loadProfiles(path.resolve(import.meta.dirname, "..", "profiles"));
const profile = (name: string) => {
  const p = profiles.get(name);
  if (!p) throw new Error(`no shipped profile ${name}`);
  return p;
};

const SECOND = 1_000;
const HOUR = 3_600 * SECOND;
const DAY = 24 * HOUR;
/** A fixed clock, so lifetimes can be checked to the millisecond. */
const NOW = new Date("2026-06-01T12:00:00.000Z");
const FAR = new Date(NOW.getTime() + 5 * 365 * DAY);

const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";
const CODE_SIGNING = "1.3.6.1.5.5.7.3.3";

const csrOf = async (opts: CsrOptions): Promise<ParsedCsr> => parseCsr(makeCsr(opts).csr);

/** decide() for a profile with the fixed clock; async so that a refusal is a rejected promise. */
async function decideFor(name: string, csr: ParsedCsr, extra: Partial<DecideInput> = {}) {
  return decide({ profile: profile(name), csr, issuerNotAfter: FAR, now: NOW, ...extra });
}

function derOf(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----(BEGIN|END) [^-]+-----/g, "").replace(/\s+/g, ""), "base64");
}

function pemOf(der: Buffer, label = "CERTIFICATE REQUEST"): string {
  return `-----BEGIN ${label}-----\n${der.toString("base64").match(/.{1,64}/g)!.join("\n")}\n-----END ${label}-----\n`;
}

describe("parseCsr: what is not a usable CSR", () => {
  it("text that is not PEM -> bad-csr, saying a CERTIFICATE REQUEST block is expected", async () => {
    await expect(parseCsr("MIIBhDCCASkCAQAw")).rejects.toMatchObject({
      kind: "bad-csr",
      detail: expect.stringContaining('"CERTIFICATE REQUEST"'),
    });
  });

  it("a private key pasted instead of the CSR -> bad-csr", async () => {
    await expect(parseCsr(makeKey("ec-p256"))).rejects.toMatchObject({ kind: "bad-csr" });
  });

  it("the refusal is a Rejection (what the API and CLI turn into messages)", async () => {
    await expect(parseCsr("")).rejects.toBeInstanceOf(Rejection);
  });

  it("PEM armour around bytes that are not DER -> bad-csr, saying the block holds no PKCS#10 request", async () => {
    const pem = pemOf(Buffer.from("this is not a DER-encoded certification request"));
    await expect(parseCsr(pem)).rejects.toMatchObject({ kind: "bad-csr", detail: expect.stringContaining("PKCS#10") });
  });

  it("a truncated CSR -> bad-csr", async () => {
    const der = derOf(makeCsr({}).csr);
    await expect(parseCsr(pemOf(der.subarray(0, der.length - 20)))).rejects.toMatchObject({ kind: "bad-csr" });
  });

  it.each(["ec-p256", "rsa-2048", "ed25519"] as const)("%s: a flipped byte in the signature -> bad-csr-signature", async (key) => {
    const der = derOf(makeCsr({ key }).csr);
    der[der.length - 3]! ^= 0x01;
    await expect(parseCsr(pemOf(der))).rejects.toMatchObject({
      kind: "bad-csr-signature",
      detail: expect.stringContaining("does not verify"),
    });
  });

  it.each(["ec-p256", "ed25519"] as const)("%s: a CSR whose subject was edited after signing -> bad-csr-signature", async (key) => {
    const der = derOf(makeCsr({ key, subject: "/CN=app.example.test" }).csr);
    const at = der.indexOf(Buffer.from("app.example.test"));
    expect(at).toBeGreaterThan(0);
    der.write("evil", at, "latin1");
    await expect(parseCsr(pemOf(der))).rejects.toMatchObject({ kind: "bad-csr-signature" });
  });

  it("RSA 1024 -> bad-public-key, saying 1024 is too weak and 2048 is the minimum", async () => {
    const rejected = parseCsr(makeCsr({ key: "rsa-1024" }).csr);
    await expect(rejected).rejects.toMatchObject({ kind: "bad-public-key", detail: expect.stringContaining("1024") });
    await expect(rejected).rejects.toMatchObject({ detail: expect.stringContaining("at least 2048") });
  });

  it.each([
    ["ec-p521", "P-521"],
    ["secp256k1", "secp256k1"],
  ] as const)("%s -> bad-public-key naming the curve %s and the supported ones", async (key, curve) => {
    const rejected = parseCsr(makeCsr({ key }).csr);
    await expect(rejected).rejects.toMatchObject({ kind: "bad-public-key", detail: expect.stringContaining(`curve ${curve} `) });
    await expect(rejected).rejects.toMatchObject({ detail: expect.stringContaining("P-256 or P-384") });
  });

  it("Ed448 -> bad-public-key, listing what is supported", async () => {
    await expect(parseCsr(makeCsr({ key: "ed448" }).csr)).rejects.toMatchObject({
      kind: "bad-public-key",
      detail: expect.stringContaining("Ed25519"),
    });
  });
});

describe("parseCsr: accepted CSRs", () => {
  it.each([
    ["ec-p256", { type: "ecdsa", curve: "P-256" }],
    ["ec-p384", { type: "ecdsa", curve: "P-384" }],
    ["rsa-2048", { type: "rsa", bits: 2048 }],
    ["rsa-3072", { type: "rsa", bits: 3072 }],
    ["ed25519", { type: "ed25519" }],
  ] as const)("%s is classified as %o", async (key, expected) => {
    const parsed = await csrOf({ key });
    expect(parsed.key).toEqual(expected);
    expect(parsed.subject.toString()).toBe("CN=app.example.test");
  });

  it("returns the requested SANs as written, in order", async () => {
    const parsed = await csrOf({ san: "DNS:app.example.test,IP:10.1.2.3,IP:fd00::1,URI:spiffe://example.org/ns/a/sa/b,email:ops@example.com" });
    expect(parsed.sans).toEqual([
      { type: "dns", value: "app.example.test" },
      { type: "ip", value: "10.1.2.3" },
      { type: "ip", value: "fd00::1" },
      { type: "url", value: "spiffe://example.org/ns/a/sa/b" },
      { type: "email", value: "ops@example.com" },
    ]);
  });

  it("a CSR with no SAN extension has no SANs", async () => {
    expect((await csrOf({})).sans).toEqual([]);
  });

  it('the "NEW CERTIFICATE REQUEST" armour of openssl req -newhdr (and keytool, certreq) is accepted', async () => {
    const dir = tempDir("newhdr-");
    try {
      fs.writeFileSync(path.join(dir, "key.pem"), makeKey("ec-p256"));
      const pem = openssl(["req", "-new", "-newhdr", "-key", path.join(dir, "key.pem"), "-subj", "/CN=app.example.test"]);
      expect(pem).toMatch(/^-----BEGIN NEW CERTIFICATE REQUEST-----/);
      expect(pem).toMatch(/-----END NEW CERTIFICATE REQUEST-----\s*$/);
      expect((await parseCsr(pem)).key).toEqual({ type: "ecdsa", curve: "P-256" });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("Windows line endings are accepted", async () => {
    const pem = makeCsr({ key: "ed25519" }).csr.replace(/\n/g, "\r\n");
    expect((await parseCsr(pem)).key).toEqual({ type: "ed25519" });
  });
});

describe("decide: tls-server", () => {
  it("DNS and IP SANs: CN is the first SAN (not the CSR's CN), O is copied, serverAuth, digitalSignature for EC", async () => {
    const csr = await csrOf({
      subject: "/O=Example Corp/CN=something-else.example.test",
      san: "DNS:app.example.test,DNS:api.example.test,IP:10.1.2.3,IP:::1",
    });
    const d = await decideFor("tls-server", csr);
    expect(d.subject).toEqual([
      ["O", "Example Corp"],
      ["CN", "app.example.test"],
    ]);
    expect(d.sans).toEqual([
      { type: "dns", value: "app.example.test" },
      { type: "dns", value: "api.example.test" },
      { type: "ip", value: "10.1.2.3" },
      { type: "ip", value: "::1" },
    ]);
    expect(d.sanCritical).toBe(false);
    expect(d.extendedKeyUsage).toEqual([SERVER_AUTH]);
    expect(d.keyUsage).toEqual(["digitalSignature"]);
  });

  it("an IP as the first SAN becomes the CN", async () => {
    const d = await decideFor("tls-server", await csrOf({ san: "IP:192.168.1.10,DNS:app.example.test" }));
    expect(d.subject).toEqual([["CN", "192.168.1.10"]]);
  });

  it("RSA keys also get keyEncipherment", async () => {
    const d = await decideFor("tls-server", await csrOf({ key: "rsa-2048", san: "DNS:app.example.test" }));
    expect(d.keyUsage).toEqual(["digitalSignature", "keyEncipherment"]);
  });

  it("Ed25519 is accepted and gets digitalSignature only", async () => {
    const d = await decideFor("tls-server", await csrOf({ key: "ed25519", san: "DNS:app.example.test" }));
    expect(d.keyUsage).toEqual(["digitalSignature"]);
  });

  it("a CSR with only a CN that is a DNS name gets it as a DNS SAN (fromCommonName)", async () => {
    const d = await decideFor("tls-server", await csrOf({ subject: "/CN=app.example.test" }));
    expect(d.sans).toEqual([{ type: "dns", value: "app.example.test" }]);
    expect(d.subject).toEqual([["CN", "app.example.test"]]);
  });

  it("a CSR with only a CN that is an IP address gets it as an IP SAN", async () => {
    const d = await decideFor("tls-server", await csrOf({ subject: "/CN=10.20.30.40" }));
    expect(d.sans).toEqual([{ type: "ip", value: "10.20.30.40" }]);
  });

  it("a CSR whose CN is not a name and that has no SAN -> rejected-identifier asking for a SAN", async () => {
    await expect(decideFor("tls-server", await csrOf({ subject: "/CN=My Web Server" }))).rejects.toMatchObject({
      kind: "rejected-identifier",
      detail: expect.stringContaining("at least one subjectAltName"),
    });
  });

  it.each(["www.google.com", "evilexample.com", "example.com.attacker.net"])(
    "DNS name %s outside the suffixes -> rejected-identifier naming it and the allowed suffixes",
    async (name) => {
      const rejected = decideFor("tls-server", await csrOf({ san: `DNS:app.example.test,DNS:${name}` }));
      await expect(rejected).rejects.toMatchObject({ kind: "rejected-identifier", detail: expect.stringContaining(`"${name}"`) });
      await expect(rejected).rejects.toMatchObject({ detail: expect.stringContaining("example.com") });
    },
  );

  it("a DNS name equal to a suffix is accepted", async () => {
    const d = await decideFor("tls-server", await csrOf({ san: "DNS:example.com,DNS:cluster.local" }));
    expect(d.sans.map((s) => s.value)).toEqual(["example.com", "cluster.local"]);
  });

  it.each(["8.8.8.8", "172.32.0.1", "2001:db8::1"])("IP %s outside the ranges -> rejected-identifier naming it", async (ip) => {
    const rejected = decideFor("tls-server", await csrOf({ san: `DNS:app.example.test,IP:${ip}` }));
    await expect(rejected).rejects.toMatchObject({ kind: "rejected-identifier", detail: expect.stringContaining(`IP address ${ip} `) });
    await expect(rejected).rejects.toMatchObject({ detail: expect.stringContaining("10.0.0.0/8") });
  });

  it("IPs at the edges of the ranges are accepted", async () => {
    const d = await decideFor("tls-server", await csrOf({ san: "IP:172.31.255.255,IP:127.0.0.1,IP:fdff::1" }));
    expect(d.sans).toHaveLength(3);
  });

  it("a wildcard name is allowed, and becomes the CN", async () => {
    const d = await decideFor("tls-server", await csrOf({ san: "DNS:*.apps.example.test" }));
    expect(d.sans).toEqual([{ type: "dns", value: "*.apps.example.test" }]);
    expect(d.subject).toEqual([["CN", "*.apps.example.test"]]);
  });

  it("a wildcard over a bare suffix (*.test) is too broad -> rejected-identifier", async () => {
    await expect(decideFor("tls-server", await csrOf({ san: "DNS:*.test" }))).rejects.toMatchObject({
      kind: "rejected-identifier",
      detail: expect.stringContaining("too broad"),
    });
  });

  it("an upper-case DNS name -> rejected-identifier saying it must be lower-case", async () => {
    await expect(decideFor("tls-server", await csrOf({ san: "DNS:App.Example.test" }))).rejects.toMatchObject({
      kind: "rejected-identifier",
      detail: 'DNS name "App.Example.test" must be lower-case',
    });
  });

  it("a URI SAN -> rejected-identifier: the profile does not allow URIs", async () => {
    await expect(
      decideFor("tls-server", await csrOf({ san: "DNS:app.example.test,URI:spiffe://example.org/ns/a/sa/b" })),
    ).rejects.toMatchObject({ kind: "rejected-identifier", detail: "profile tls-server does not allow URIs" });
  });

  it("a repeated SAN is written once", async () => {
    const d = await decideFor("tls-server", await csrOf({ san: "DNS:app.example.test,DNS:app.example.test,IP:10.0.0.1" }));
    expect(d.sans).toEqual([
      { type: "dns", value: "app.example.test" },
      { type: "ip", value: "10.0.0.1" },
    ]);
  });
});

describe("decide: spiffe-svid", () => {
  const SPIFFE_ID = "spiffe://example.org/ns/default/sa/web";

  it("exactly one SPIFFE ID: empty subject (even if the CSR has a CN), critical SAN, serverAuth+clientAuth", async () => {
    const d = await decideFor("spiffe-svid", await csrOf({ subject: "/CN=web/O=Example", san: `URI:${SPIFFE_ID}` }));
    expect(d.subject).toEqual([]);
    expect(d.sans).toEqual([{ type: "url", value: SPIFFE_ID }]);
    expect(d.sanCritical).toBe(true);
    expect(d.extendedKeyUsage).toEqual([SERVER_AUTH, CLIENT_AUTH]);
    expect(d.keyUsage).toEqual(["digitalSignature"]);
  });

  it("an RSA 2048 SVID gets keyEncipherment too", async () => {
    const d = await decideFor("spiffe-svid", await csrOf({ key: "rsa-2048", subject: "/", san: `URI:${SPIFFE_ID}` }));
    expect(d.keyUsage).toEqual(["digitalSignature", "keyEncipherment"]);
  });

  it("two URI SANs -> rejected-identifier saying exactly one is needed and how many there were", async () => {
    const csr = await csrOf({ subject: "/", san: `URI:${SPIFFE_ID},URI:spiffe://example.org/ns/default/sa/api` });
    await expect(decideFor("spiffe-svid", csr)).rejects.toMatchObject({
      kind: "rejected-identifier",
      detail: expect.stringMatching(/exactly one URI SAN.*the CSR has 2/),
    });
  });

  it("a DNS SAN beside the SPIFFE ID -> rejected-identifier: the profile does not allow DNS names", async () => {
    const csr = await csrOf({ subject: "/", san: `URI:${SPIFFE_ID},DNS:web.example.org` });
    await expect(decideFor("spiffe-svid", csr)).rejects.toMatchObject({
      kind: "rejected-identifier",
      detail: "profile spiffe-svid does not allow DNS names",
    });
  });

  it("a trust domain the profile does not serve -> rejected-identifier naming it", async () => {
    const csr = await csrOf({ subject: "/", san: "URI:spiffe://evil.example/ns/default/sa/web" });
    await expect(decideFor("spiffe-svid", csr)).rejects.toMatchObject({
      kind: "rejected-identifier",
      detail: expect.stringContaining('trust domain "evil.example"'),
    });
  });

  it.each(["https://example.org/ns/default/sa/web", "spiffe://example.org/ns/../sa/web", "spiffe://example.org/ns/default?x=1"])(
    "%s is not a valid SPIFFE ID -> rejected-identifier",
    async (uri) => {
      await expect(decideFor("spiffe-svid", await csrOf({ subject: "/", san: `URI:${uri}` }))).rejects.toMatchObject({
        kind: "rejected-identifier",
        detail: expect.stringContaining(uri),
      });
    },
  );

  it("no SAN at all -> rejected-identifier", async () => {
    await expect(decideFor("spiffe-svid", await csrOf({ subject: "/CN=web" }))).rejects.toMatchObject({
      kind: "rejected-identifier",
      detail: expect.stringContaining("subjectAltName"),
    });
  });

  it("an Ed25519 key -> bad-public-key, listing the keys the profile accepts", async () => {
    const rejected = decideFor("spiffe-svid", await csrOf({ key: "ed25519", subject: "/", san: `URI:${SPIFFE_ID}` }));
    await expect(rejected).rejects.toMatchObject({
      kind: "bad-public-key",
      detail: expect.stringContaining("does not accept Ed25519 keys"),
    });
    await expect(rejected).rejects.toMatchObject({ detail: expect.stringContaining("ECDSA P-256") });
  });
});

describe("decide: code-signing", () => {
  it("takes the CN from the CSR and copies O (and C, OU) in DN order; codeSigning; no SAN needed", async () => {
    const csr = await csrOf({ subject: "/CN=Example Release Signing/OU=Release/O=Example Corp/C=GB" });
    const d = await decideFor("code-signing", csr);
    expect(d.subject).toEqual([
      ["C", "GB"],
      ["O", "Example Corp"],
      ["OU", "Release"],
      ["CN", "Example Release Signing"],
    ]);
    expect(d.sans).toEqual([]);
    expect(d.sanCritical).toBe(false);
    expect(d.extendedKeyUsage).toEqual([CODE_SIGNING]);
    expect(d.keyUsage).toEqual(["digitalSignature"]);
  });

  it("a CSR with no CN -> bad-subject saying the CN is needed", async () => {
    await expect(decideFor("code-signing", await csrOf({ subject: "/O=Example Corp" }))).rejects.toMatchObject({
      kind: "bad-subject",
      detail: expect.stringContaining("CN"),
    });
  });

  it("P-256 is accepted", async () => {
    const d = await decideFor("code-signing", await csrOf({ key: "ec-p256", subject: "/CN=Signer" }));
    expect(d.subject).toEqual([["CN", "Signer"]]);
  });

  it("RSA 2048 -> bad-public-key, naming the RSA sizes the profile accepts", async () => {
    const rejected = decideFor("code-signing", await csrOf({ key: "rsa-2048", subject: "/CN=Signer" }));
    await expect(rejected).rejects.toMatchObject({ kind: "bad-public-key", detail: expect.stringContaining("does not accept RSA 2048") });
    await expect(rejected).rejects.toMatchObject({ detail: expect.stringContaining("RSA 3072, RSA 4096") });
  });

  it("RSA 3072 is accepted, and gets no keyEncipherment (the profile adds none for RSA)", async () => {
    const d = await decideFor("code-signing", await csrOf({ key: "rsa-3072", subject: "/CN=Signer" }));
    expect(d.keyUsage).toEqual(["digitalSignature"]);
  });

  it("a DNS SAN -> rejected-identifier: code-signing allows no names", async () => {
    await expect(decideFor("code-signing", await csrOf({ subject: "/CN=Signer", san: "DNS:app.example.test" }))).rejects.toMatchObject({
      kind: "rejected-identifier",
      detail: "profile code-signing does not allow DNS names",
    });
  });
});

describe("decide: tls-client", () => {
  it("CN from the CSR, an email SAN in an allowed domain, clientAuth", async () => {
    const d = await decideFor("tls-client", await csrOf({ subject: "/O=Example/CN=alice", san: "email:alice@example.com" }));
    expect(d.subject).toEqual([
      ["O", "Example"],
      ["CN", "alice"],
    ]);
    expect(d.sans).toEqual([{ type: "email", value: "alice@example.com" }]);
    expect(d.extendedKeyUsage).toEqual([CLIENT_AUTH]);
  });

  it("an email SAN in another domain -> rejected-identifier naming the address", async () => {
    await expect(decideFor("tls-client", await csrOf({ subject: "/CN=mallory", san: "email:mallory@evil.test" }))).rejects.toMatchObject({
      kind: "rejected-identifier",
      detail: expect.stringContaining('"mallory@evil.test"'),
    });
  });

  it("a wildcard DNS name -> rejected-identifier (wildcards are off for clients)", async () => {
    await expect(decideFor("tls-client", await csrOf({ subject: "/CN=svc", san: "DNS:*.example.test" }))).rejects.toMatchObject({
      kind: "rejected-identifier",
      detail: expect.stringContaining("wildcard"),
    });
  });
});

describe("decide: validity", () => {
  const serverCsr = () => csrOf({ san: "DNS:app.example.test" });
  const svidCsr = () => csrOf({ subject: "/", san: "URI:spiffe://example.org/ns/default/sa/web" });

  it("no validity asked: tls-server gets its default of 30 days", async () => {
    const d = await decideFor("tls-server", await serverCsr());
    expect(d.notAfter.getTime() - NOW.getTime()).toBe(30 * DAY);
  });

  it("no validity asked: spiffe-svid gets its default of 1 hour", async () => {
    const d = await decideFor("spiffe-svid", await svidCsr());
    expect(d.notAfter.getTime() - NOW.getTime()).toBe(1 * HOUR);
  });

  it('"24h" is honoured', async () => {
    const d = await decideFor("tls-server", await serverCsr(), { validity: "24h" });
    expect(d.notAfter.getTime() - NOW.getTime()).toBe(24 * HOUR);
  });

  it("exactly the max is allowed", async () => {
    const d = await decideFor("spiffe-svid", await svidCsr(), { validity: "24h" });
    expect(d.notAfter.getTime() - NOW.getTime()).toBe(24 * HOUR);
  });

  it.each([
    ["tls-server", "91d", "90d"],
    // The max is shown normalised to its largest whole unit: 24h is 1d.
    ["spiffe-svid", "25h", "1d"],
    ["spiffe-svid", "1441m", "1d"],
  ])("%s: %s is over the max -> bad-validity, saying the max (%s)", async (name, validity, max) => {
    const csr = name === "tls-server" ? await serverCsr() : await svidCsr();
    await expect(decideFor(name, csr, { validity })).rejects.toMatchObject({
      kind: "bad-validity",
      detail: `validity ${validity} is longer than profile ${name} allows (${max})`,
    });
  });

  it.each(["abc", "", "0d", "-1h", "1.5d", "1w", "24 hours"])('"%s" is not a duration -> bad-validity with an example', async (validity) => {
    await expect(decideFor("tls-server", await serverCsr(), { validity })).rejects.toMatchObject({
      kind: "bad-validity",
      detail: `validity "${validity}" is not a duration like "24h" or "30d"`,
    });
  });

  it("notAfter is clamped to the issuer's notAfter when the issuer expires sooner", async () => {
    const issuerNotAfter = new Date(NOW.getTime() + 10 * DAY);
    const d = await decideFor("tls-server", await serverCsr(), { issuerNotAfter });
    expect(d.notAfter.getTime()).toBe(issuerNotAfter.getTime());
    const asked = await decideFor("tls-server", await serverCsr(), { issuerNotAfter, validity: "20d" });
    expect(asked.notAfter.getTime()).toBe(issuerNotAfter.getTime());
  });

  it("a lifetime that ends before the issuer's is not clamped", async () => {
    const issuerNotAfter = new Date(NOW.getTime() + 10 * DAY);
    const d = await decideFor("tls-server", await serverCsr(), { issuerNotAfter, validity: "9d" });
    expect(d.notAfter.getTime() - NOW.getTime()).toBe(9 * DAY);
  });

  it("an issuer that has already expired -> ca-not-ready", async () => {
    await expect(decideFor("tls-server", await serverCsr(), { issuerNotAfter: new Date(NOW.getTime() - 1) })).rejects.toMatchObject({
      kind: "ca-not-ready",
      detail: expect.stringContaining("expired"),
    });
  });

  it("notBefore is slightly (one minute) before now", async () => {
    const d = await decideFor("tls-server", await serverCsr());
    expect(NOW.getTime() - d.notBefore.getTime()).toBe(60 * SECOND);
  });

  it("notBefore never precedes the issuer's own start (an intermediate an external root signed seconds ago)", async () => {
    const issuerNotBefore = new Date(NOW.getTime() - 10 * SECOND);
    const d = await decideFor("tls-server", await serverCsr(), { issuerNotBefore });
    expect(d.notBefore.getTime()).toBe(issuerNotBefore.getTime());
  });

  it("with the real clock, notBefore is in the recent past", async () => {
    const csr = await serverCsr();
    const before = Date.now();
    const d = decide({ profile: profile("tls-server"), csr, issuerNotAfter: new Date(Date.now() + 365 * DAY) });
    const after = Date.now();
    expect(d.notBefore.getTime()).toBeLessThan(before);
    expect(d.notBefore.getTime()).toBeGreaterThanOrEqual(before - 5 * 60 * SECOND);
    expect(d.notAfter.getTime()).toBeGreaterThanOrEqual(before + 30 * DAY);
    expect(d.notAfter.getTime()).toBeLessThanOrEqual(after + 30 * DAY);
  });
});

/**
 * A CSR with names no openssl command line writes (NUL, control and bidi
 * characters), made with @peculiar/x509 and a software key, then parsed
 * as the service parses it.
 */
async function x509Csr(name: x509.JsonName, sans: x509.JsonGeneralName[] = []): Promise<ParsedCsr> {
  const keys = (await crypto.webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name,
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    extensions: sans.length ? [new x509.SubjectAlternativeNameExtension(sans)] : [],
  });
  return parseCsr(csr.toString("pem"));
}

/** A shipped profile with some rules changed, checked by the profile schema as a profiles/*.yaml file would be. */
function variant(name: string, change: (p: Profile) => void): Profile {
  const p = structuredClone(profile(name));
  change(p);
  return profileSchema.parse({ ...p, name: `${name}-lenient` });
}

describe("decide: characters no name may hold, in every profile", () => {
  it.each([
    ["NUL", "\u0000", "a NUL character (U+0000)"],
    ["BEL", "\u0007", "a control character (U+0007)"],
    ["ESC", "\u001b", "a control character (U+001B)"],
    ["DEL", "\u007f", "a control character (U+007F)"],
    ["C1 CSI", "\u009b", "a control character (U+009B)"],
    ["RIGHT-TO-LEFT OVERRIDE", "\u202e", "a bidirectional override or isolate character (U+202E)"],
    ["LEFT-TO-RIGHT EMBEDDING", "\u202a", "a bidirectional override or isolate character (U+202A)"],
    ["FIRST STRONG ISOLATE", "\u2068", "a bidirectional override or isolate character (U+2068)"],
  ])("%s in the CN -> bad-subject naming the CN and the character", async (_name, ch, what) => {
    const csr = await x509Csr([{ CN: [`alice${ch}gpj.exe`] }]);
    await expect(decideFor("code-signing", csr)).rejects.toMatchObject({
      kind: "bad-subject",
      detail: `the CSR's subject CN "alice\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}gpj.exe" contains ${what}`,
    });
  });

  it("NUL in an OU that tls-server copies -> bad-subject naming the OU", async () => {
    const csr = await x509Csr([{ OU: ["Ops\u0000Admins"] }, { CN: ["app.example.test"] }], [{ type: "dns", value: "app.example.test" }]);
    await expect(decideFor("tls-server", csr)).rejects.toMatchObject({ kind: "bad-subject", detail: expect.stringMatching(/^the CSR's subject OU "Ops\\u0000Admins" contains a NUL character/) });
  });

  it("a bidi override in a subject attribute the profile does not copy (L) is refused too", async () => {
    const csr = await x509Csr([{ L: ["\u202eLondon"] }, { CN: ["app.example.test"] }], [{ type: "dns", value: "app.example.test" }]);
    await expect(decideFor("tls-server", csr)).rejects.toMatchObject({ kind: "bad-subject", detail: expect.stringContaining("subject L ") });
  });

  it("NUL in an email SAN -> rejected-identifier naming the email address, even in an allowed domain", async () => {
    const csr = await x509Csr([{ CN: ["alice"] }], [{ type: "email", value: "alice\u0000@example.com" }]);
    await expect(decideFor("tls-client", csr)).rejects.toMatchObject({
      kind: "rejected-identifier",
      detail: `the CSR's email address (rfc822Name) SAN "alice\\u0000@example.com" contains a NUL character (U+0000)`,
    });
  });

  it("a C1 control byte in a DNS SAN -> rejected-identifier naming the DNS name", async () => {
    const csr = await x509Csr([{ CN: ["app.example.test"] }], [{ type: "dns", value: "app\u0085.example.test" }]);
    await expect(decideFor("tls-server", csr)).rejects.toMatchObject({ kind: "rejected-identifier", detail: expect.stringContaining("DNS name SAN") });
  });

  it("a non-ASCII email address -> rejected-identifier (rfc822Name is IA5String)", async () => {
    const csr = await x509Csr([{ CN: ["alice"] }], [{ type: "email", value: "al\u00efce@example.com" }]);
    await expect(decideFor("tls-client", csr)).rejects.toMatchObject({ kind: "rejected-identifier", detail: expect.stringContaining("not ASCII") });
  });

  it("ordinary non-ASCII text (accents, right-to-left script without overrides) is still accepted", async () => {
    const d = await decideFor("code-signing", await x509Csr([{ O: ["Société Générale"] }, { OU: ["\u05e6\u05d5\u05d5\u05ea"] }, { CN: ["Zoë's signing key"] }]));
    expect(d.subject).toEqual([
      ["O", "Société Générale"],
      ["OU", "\u05e6\u05d5\u05d5\u05ea"],
      ["CN", "Zoë's signing key"],
    ]);
  });
});

describe("decide: single-label DNS names", () => {
  it.each(["test", "localhost", "intranet"])("%s -> rejected-identifier by default, saying it is a single label", async (name) => {
    const csr = await csrOf({ subject: "/", san: `DNS:app.example.test,DNS:${name}` });
    await expect(decideFor("tls-server", csr)).rejects.toMatchObject({
      kind: "rejected-identifier",
      detail: expect.stringMatching(new RegExp(`^DNS name "${name}" is a single label: profile tls-server does not allow single-label names`)),
    });
  });

  it("a single-label CN taken as the SAN (fromCommonName) is refused the same way", async () => {
    await expect(decideFor("tls-server", await csrOf({ subject: "/CN=test" }))).rejects.toMatchObject({ kind: "rejected-identifier", detail: expect.stringContaining("single label") });
  });

  it("accepted where the profile says sans.dns.singleLabel: true", async () => {
    const lenient = variant("tls-server", (p) => (p.sans.dns!.singleLabel = true));
    const d = decide({ profile: lenient, csr: await csrOf({ subject: "/", san: "DNS:test" }), issuerNotAfter: FAR, now: NOW });
    expect(d.sans).toEqual([{ type: "dns", value: "test" }]);
    expect(d.subject).toEqual([["CN", "test"]]);
  });
});

describe("decide: IPv4-mapped IPv6 addresses", () => {
  it.each(["::ffff:10.0.0.1", "0:0:0:0:0:ffff:a00:1"])("%s -> rejected-identifier by default, naming the IPv4 address to ask for", async (ip) => {
    const rejected = decideFor("tls-server", await csrOf({ subject: "/", san: `IP:${ip}` }));
    await expect(rejected).rejects.toMatchObject({ kind: "rejected-identifier", detail: expect.stringContaining("is an IPv4-mapped IPv6 address (of 10.0.0.1)") });
    await expect(rejected).rejects.toMatchObject({ detail: expect.stringContaining("ask for 10.0.0.1 itself") });
  });

  it("plain IPv6 and IPv4 addresses are unaffected", async () => {
    const d = await decideFor("tls-server", await csrOf({ subject: "/", san: "IP:fd00::ffff:a00:1,IP:10.0.0.1" }));
    expect(d.sans).toEqual([
      { type: "ip", value: "fd00::ffff:a00:1" },
      { type: "ip", value: "10.0.0.1" },
    ]);
  });

  it("accepted where the profile says sans.ip.ipv4Mapped: true, written ::ffff:10.0.0.1 in SAN and CN (never ::ffff:a00:1)", async () => {
    const lenient = variant("tls-server", (p) => (p.sans.ip!.ipv4Mapped = true));
    const d = decide({ profile: lenient, csr: await csrOf({ subject: "/", san: "IP:::ffff:10.0.0.1" }), issuerNotAfter: FAR, now: NOW });
    expect(d.sans).toEqual([{ type: "ip", value: "::ffff:10.0.0.1" }]);
    expect(d.subject).toEqual([["CN", "::ffff:10.0.0.1"]]);
  });
});

describe("decide: RSA public exponents", () => {
  const rsaKeyWithExponent = (e: number) => openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-pkeyopt", `rsa_keygen_pubexp:${e}`]);
  const e3Key = rsaKeyWithExponent(3);

  it("e = 3 -> bad-public-key by default, naming the exponent", async () => {
    await expect(decideFor("tls-server", await csrOf({ keyPem: e3Key, san: "DNS:app.example.test" }))).rejects.toMatchObject({
      kind: "bad-public-key",
      detail: "profile tls-server does not accept RSA public exponent 3: it accepts exponents from 65537 (use 65537)",
    });
  });

  it("e = 65535 (just below 65537) -> bad-public-key; e = 65539 is accepted", async () => {
    await expect(decideFor("tls-server", await csrOf({ keyPem: rsaKeyWithExponent(65535), san: "DNS:app.example.test" }))).rejects.toMatchObject({ kind: "bad-public-key", detail: expect.stringContaining("exponent 65535") });
    const d = await decideFor("tls-server", await csrOf({ keyPem: rsaKeyWithExponent(65539), san: "DNS:app.example.test" }));
    expect(d.keyUsage).toContain("keyEncipherment");
  });

  it("e = 3 accepted where the profile says subjectKeys.rsaSmallExponents: true", async () => {
    const lenient = variant("tls-server", (p) => (p.subjectKeys.rsaSmallExponents = true));
    const d = decide({ profile: lenient, csr: await csrOf({ keyPem: e3Key, san: "DNS:app.example.test" }), issuerNotAfter: FAR, now: NOW });
    expect(d.sans).toEqual([{ type: "dns", value: "app.example.test" }]);
  });
});

describe("ACME identifiers: the same name rules", () => {
  const acme = loadAcmeProfiles(path.resolve(import.meta.dirname, "..", "profiles", "acme"), profiles).get("default")!;

  it("a single-label DNS identifier and an IPv4-mapped IP identifier -> rejectedIdentifier each, nothing accepted", () => {
    const { accepted, problems } = checkIdentifiers(acme, profile("tls-server"), [
      { type: "dns", value: "test" },
      { type: "ip", value: "::ffff:10.0.0.1" },
    ]);
    expect(accepted).toEqual([]);
    expect(problems).toEqual([
      { identifier: { type: "dns", value: "test" }, type: "rejectedIdentifier", detail: expect.stringContaining("single label") },
      { identifier: { type: "ip", value: "::ffff:10.0.0.1" }, type: "rejectedIdentifier", detail: expect.stringContaining("IPv4-mapped") },
    ]);
  });

  it("both accepted when the directory's certificate profile allows them, the address written ::ffff:10.0.0.1", () => {
    const lenient = variant("tls-server", (p) => {
      p.sans.dns!.singleLabel = true;
      p.sans.ip!.ipv4Mapped = true;
    });
    const { accepted, problems } = checkIdentifiers(acme, lenient, [
      { type: "dns", value: "test" },
      { type: "ip", value: "::ffff:a00:1" },
    ]);
    expect(problems).toEqual([]);
    expect(accepted).toEqual([
      { type: "dns", value: "test" },
      { type: "ip", value: "::ffff:10.0.0.1" },
    ]);
  });
});

describe("profiles: the name allowances", () => {
  it("every shipped profile leaves them off", () => {
    for (const p of profiles.values()) {
      expect(p.subjectKeys.rsaSmallExponents, p.name).toBe(false);
      if (p.sans.dns) expect(p.sans.dns.singleLabel, p.name).toBe(false);
      if (p.sans.ip) expect(p.sans.ip.ipv4Mapped, p.name).toBe(false);
    }
  });
});
