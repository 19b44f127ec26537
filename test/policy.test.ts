import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parseCsr, type ParsedCsr } from "../src/ca/csr.ts";
import { Rejection } from "../src/errors.ts";
import { decide, type DecideInput } from "../src/policy/decide.ts";
import { loadProfiles } from "../src/policy/profiles.ts";
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
    const d = await decideFor("tls-server", await csrOf({ san: "DNS:example.com,DNS:localhost" }));
    expect(d.sans.map((s) => s.value)).toEqual(["example.com", "localhost"]);
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
