import "reflect-metadata";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import * as x509 from "@peculiar/x509";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildCrl } from "../src/ca/crl.ts";
import { buildLeafCertificate, type LeafInput } from "../src/ca/leaf-certificate.ts";
import { buildCertId, issuerHashes } from "../src/ca/ocsp-cert-id.ts";
import { buildOcspResponse } from "../src/ca/ocsp-response.ts";
import { newSerial } from "../src/ca/serial.ts";
import { PROBLEM_TYPE_PREFIX } from "../src/api/problem.ts";
import type { Signer } from "../src/hsm/key-manager.ts";
import type { ActiveIssuer } from "../src/issuance/issuer.ts";
import { nameRulesOf } from "../src/issuance/lint-context.ts";
import { lintCertificate } from "../src/lint/certificate.ts";
import { firstElement } from "../src/lint/der-envelope.ts";
import { setLintEnabled } from "../src/lint/gate.ts";
import type { LeafTemplate } from "../src/ca/leaf-template.ts";
import { makeCsr, tempDir } from "./helpers/openssl.ts";
import { parsePrometheusText } from "./helpers/prometheus.ts";
import { REPO } from "./helpers/cli.ts";
import { startTestService, type TestService } from "./helpers/service.ts";
import { waitFor } from "./helpers/wait.ts";

/**
 * Lint before sign (docs/lint.md): a malformed template handed to the
 * signer gets the CA key used zero times, an error naming the rule, a 500
 * lint-failed problem over REST, an audit entry and a count in /metrics;
 * well-formed templates still pass the same gate.
 */
const METRICS_TOKEN = "lint-scrape-0123456789abcdef";

let t: TestService;
let sql: postgres.Sql;
let issuer: ActiveIssuer;
/** HSM signatures with the intermediate's key, as the key-use events report them. */
let intermediateSigns = 0;

beforeAll(async () => {
  // The shipped profiles, plus one an operator got wrong: keyEncipherment for every key, EC keys included.
  const profilesDir = tempDir("lint-profiles-");
  for (const f of fs.readdirSync(path.join(REPO, "profiles"))) {
    if (f.endsWith(".yaml")) fs.copyFileSync(path.join(REPO, "profiles", f), path.join(profilesDir, f));
  }
  const broken = fs
    .readFileSync(path.join(REPO, "profiles", "tls-server.yaml"), "utf8")
    .replace("name: tls-server", "name: tls-server-broken")
    .replace("all: [digitalSignature]", "all: [digitalSignature, keyEncipherment]");
  fs.writeFileSync(path.join(profilesDir, "tls-server-broken.yaml"), broken);
  t = await startTestService("postgres", { HSM_CA_PROFILES_DIR: profilesDir, HSM_CA_METRICS_TOKEN: METRICS_TOKEN });
  sql = postgres(t.env.DATABASE_URL!, { max: 1, onnotice: () => {} });
  issuer = t.service.ctx.issuer();
  t.service.hsm.onKeyUse((e) => {
    if (e.operation === "sign" && e.label === issuer.row.keyLabel) intermediateSigns++;
  });
});

afterAll(async () => {
  setLintEnabled(true);
  await sql?.end();
  await t?.stop().catch(() => {});
});

/** The issuer's signer, counting how often anything asks it to sign. */
function countingSigner(): { signer: Signer; uses: () => number } {
  let uses = 0;
  const real = issuer.signer;
  return {
    signer: { signingAlgorithm: real.signingAlgorithm, use: (fn) => (uses++, real.use(fn)) },
    uses: () => uses,
  };
}

function spki(): ArrayBuffer {
  const { publicKey } = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
  return new Uint8Array(publicKey.export({ format: "der", type: "spki" })).buffer;
}

const HOUR = 3_600_000;
function goodTemplate(): LeafTemplate {
  const now = Date.now();
  return {
    subject: [["CN", "web.example.test"]],
    sans: [{ type: "dns", value: "web.example.test" }],
    sanCritical: false,
    keyUsage: ["digitalSignature"],
    extendedKeyUsage: ["1.3.6.1.5.5.7.3.1"],
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + HOUR),
  };
}

async function scrapeLintFailures(rule: string, kind: string): Promise<number> {
  const res = await fetch(`${t.service.httpUrl}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
  const scrape = parsePrometheusText(await res.text());
  const samples = scrape.samples.filter((s) => s.name === "hsmca_lint_failures_total" && s.labels.rule === rule && s.labels.kind === kind);
  return samples.reduce((n, s) => n + s.value, 0);
}

describe("lint before sign: certificates handed to the signer", () => {
  const tlsServer = () => nameRulesOf(t.service.ctx.profiles.get("tls-server")!);

  /** Builds a leaf from `change(goodTemplate())`; the gate must refuse it with `rule`, and the CA key must not sign. */
  async function refused(rule: string, change: (tpl: LeafTemplate, input: LeafInput) => void) {
    const { signer, uses } = countingSigner();
    const before = intermediateSigns;
    const input: LeafInput = {
      decision: goodTemplate(),
      spki: spki(),
      serial: newSerial(),
      issuer: issuer.certificate,
      algorithm: issuer.algorithm,
      signer,
      lint: { profile: tlsServer() },
    };
    change(input.decision, input);
    const err = await buildLeafCertificate(input).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err, rule).toMatchObject({ kind: "lint-failed", rule });
    expect((err as Error).message).toContain(`rule ${rule}`);
    expect(uses(), "the CA key was asked to sign").toBe(0);
    expect(intermediateSigns - before, "HSM signatures with the CA key").toBe(0);
  }

  it("signs a well-formed template once, after the gate passed it", async () => {
    const { signer, uses } = countingSigner();
    const cert = await buildLeafCertificate({ decision: goodTemplate(), spki: spki(), serial: newSerial(), issuer: issuer.certificate, algorithm: issuer.algorithm, signer, lint: { profile: tlsServer() } });
    expect(uses()).toBe(1);
    expect(new crypto.X509Certificate(cert.der).checkIssued(new crypto.X509Certificate(Buffer.from(issuer.certificate.rawData)))).toBe(true);
  });

  it("refuses a SAN the profile never produces (an email name from tls-server)", () =>
    refused("san-profile", (tpl) => tpl.sans.push({ type: "email", value: "ops@example.test" })));

  it("refuses a DNS name outside the profile's domains", () => refused("san-profile", (tpl) => (tpl.sans = [{ type: "dns", value: "web.example.test" }, { type: "dns", value: "www.google.com" }])));

  it("refuses a serial of 21 octets", () => refused("serial-length", (_tpl, input) => (input.serial = "7f" + "ab".repeat(20))));

  it("refuses serial number 0", () => refused("serial-positive", (_tpl, input) => void (input.serial = "0")));

  it("refuses a validity outside the issuer's", () => refused("validity-within-issuer", (tpl) => (tpl.notAfter = new Date(issuer.certificate.notAfter.getTime() + 24 * HOUR))));

  it("refuses a repeated SAN", () => refused("san-duplicate", (tpl) => tpl.sans.push({ type: "dns", value: "WEB.example.test" })));

  it("refuses a DNS name that is not IDNA-valid", () => refused("dns-name", (tpl) => (tpl.sans = [{ type: "dns", value: "web.example.test" }, { type: "dns", value: "bad_name.example.test" }])));

  it("refuses a malformed A-label", () => refused("dns-name", (tpl) => (tpl.sans = [{ type: "dns", value: "web.example.test" }, { type: "dns", value: "xn--a.example.test" }])));

  it("refuses a CN that is not among the SANs (a profile that makes the CN from the first SAN)", () => refused("cn-among-sans", (tpl) => (tpl.subject = [["CN", "other.example.test"]])));

  it("refuses an empty SAN", () => refused("san-empty", (tpl) => tpl.sans.push({ type: "dns", value: "" })));

  it("refuses keyEncipherment for an EC key", () => refused("key-usage-key-type", (tpl) => tpl.keyUsage.push("keyEncipherment")));

  it("refuses keyCertSign in an end-entity certificate", () => refused("key-usage", (tpl) => tpl.keyUsage.push("keyCertSign")));

  it("refuses an empty subject whose SAN is not critical", () => refused("san-critical", (tpl) => (tpl.subject = [])));

  it("refuses a duplicate extension and an unknown critical one (a TBS from another writer)", async () => {
    const key = (await crypto.webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: newSerial(),
      issuer: issuer.certificate.subjectName,
      subject: "CN=web.example.test",
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + HOUR),
      publicKey: key.publicKey,
      signingKey: key.privateKey,
      extensions: [
        new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "web.example.test" }]),
        new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "web.example.test" }]),
        new x509.Extension("1.2.3.4.5", true, new Uint8Array([5, 0])),
      ],
    });
    const err = await lintCertificate({ role: "leaf", tbs: firstElement(new Uint8Array(cert.rawData)), algorithm: issuer.algorithm, issuer: issuer.certificate }).catch((e) => e);
    expect(err).toMatchObject({ kind: "lint-failed", rule: "extension-duplicate" });
    expect(err.message).toContain("extension-unknown-critical");
  });

  it("reads DER, not BER: a BOOLEAN of 0x01, a padded length, bytes left over are refused", async () => {
    const { signer } = countingSigner();
    const cert = await buildLeafCertificate({ decision: goodTemplate(), spki: spki(), serial: newSerial(), issuer: issuer.certificate, algorithm: issuer.algorithm, signer, lint: { profile: tlsServer() } });
    const tbs = Buffer.from(firstElement(cert.der));
    const lint = (bytes: Uint8Array) => lintCertificate({ role: "leaf", tbs: bytes, algorithm: issuer.algorithm, issuer: issuer.certificate }).then(() => undefined, (e: unknown) => e);
    expect(await lint(tbs), "the builder's own TBS passes").toBeUndefined();

    // critical TRUE as 0x01: BER allows any non-zero octet, DER only 0xFF.
    const at = tbs.indexOf(Buffer.from([0x01, 0x01, 0xff]));
    expect(at).toBeGreaterThan(0);
    const loose = Buffer.from(tbs);
    loose[at + 2] = 0x01;
    expect(await lint(loose)).toMatchObject({ kind: "lint-failed", rule: "der-canonical" });

    // The outer length in one octet more than it needs (0x83 0x00 ...).
    expect(tbs[1]).toBe(0x82);
    const padded = Buffer.concat([Buffer.from([0x30, 0x83, 0x00]), tbs.subarray(2)]);
    expect(await lint(padded)).toMatchObject({ kind: "lint-failed", rule: "der-canonical" });

    expect(await lint(Buffer.concat([tbs, Buffer.from([0x00])]))).toMatchObject({ kind: "lint-failed", rule: "der-decode" });
  });

  it("with HSM_CA_LINT=off the same malformed template is signed (the gate is what stops it)", async () => {
    const { signer, uses } = countingSigner();
    setLintEnabled(false);
    try {
      const tpl = goodTemplate();
      tpl.sans.push({ type: "email", value: "ops@example.test" });
      await buildLeafCertificate({ decision: tpl, spki: spki(), serial: newSerial(), issuer: issuer.certificate, algorithm: issuer.algorithm, signer, lint: { profile: tlsServer() } });
    } finally {
      setLintEnabled(true);
    }
    expect(uses()).toBe(1);
  });
});

describe("lint before sign: CRLs and OCSP responses", () => {
  const crlInput = (signer: Signer) => {
    const now = new Date();
    return { issuer: issuer.certificate, signer, keyAlgorithm: issuer.algorithm, thisUpdate: now, nextUpdate: new Date(now.getTime() + HOUR), entries: [{ serial: "0abc", revokedAt: now }] };
  };

  it("signs a CRL whose number is above the last one", async () => {
    const { signer, uses } = countingSigner();
    await buildCrl({ ...crlInput(signer), crlNumber: 6n, previousNumber: 5n });
    expect(uses()).toBe(1);
  });

  it("refuses a CRL number that does not increase", async () => {
    const { signer, uses } = countingSigner();
    const err = await buildCrl({ ...crlInput(signer), crlNumber: 5n, previousNumber: 5n }).catch((e) => e);
    expect(err).toMatchObject({ kind: "lint-failed", rule: "crl-number-increasing" });
    expect(uses()).toBe(0);
  });

  it("refuses a CRL that repeats a serial", async () => {
    const { signer, uses } = countingSigner();
    const input = crlInput(signer);
    const err = await buildCrl({ ...input, crlNumber: 7n, entries: [...input.entries, ...input.entries] }).catch((e) => e);
    expect(err).toMatchObject({ kind: "lint-failed", rule: "crl-entry-duplicate" });
    expect(uses()).toBe(0);
  });

  it("refuses an OCSP response whose nextUpdate is not after thisUpdate", async () => {
    const { signer, uses } = countingSigner();
    const now = new Date();
    const responder = { certificate: issuer.certificate, signer, keyAlgorithm: issuer.algorithm, includeCertificate: false };
    const certId = buildCertId(issuerHashes(issuer.certificate), "sha1", "0abc");
    await buildOcspResponse({ responder, certId, status: { status: "good" }, producedAt: now, thisUpdate: now, nextUpdate: new Date(now.getTime() + HOUR) });
    expect(uses()).toBe(1);
    const err = await buildOcspResponse({ responder, certId, status: { status: "good" }, producedAt: now, thisUpdate: now, nextUpdate: now }).catch((e) => e);
    expect(err).toMatchObject({ kind: "lint-failed", rule: "ocsp-times" });
    expect(uses()).toBe(1);
  });
});

describe("lint before sign over REST", () => {
  it("answers 500 lint-failed naming the rule, signs and stores nothing, audits and counts it", async () => {
    const token = await t.token("issuer", "tls-server-broken");
    const metricBefore = await scrapeLintFailures("key-usage-key-type", "certificate");
    const storedBefore = ((await sql`select count(*)::int as n from certificates`)[0] as { n: number }).n;
    const signsBefore = intermediateSigns;
    const { csr } = makeCsr({ subject: "/CN=web.example.test", san: "DNS:web.example.test" });
    const res = await t.api("POST", "/api/v1/certificates", { token, json: { csr, profile: "tls-server-broken" } });
    expect(res.status).toBe(500);
    expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({ type: PROBLEM_TYPE_PREFIX + "lint-failed", status: 500, rule: "key-usage-key-type" });
    expect(res.body.detail).toContain("rule key-usage-key-type");
    expect(intermediateSigns - signsBefore).toBe(0);
    const storedAfter = ((await sql`select count(*)::int as n from certificates`)[0] as { n: number }).n;
    expect(storedAfter).toBe(storedBefore);
    expect(await scrapeLintFailures("key-usage-key-type", "certificate")).toBe(metricBefore + 1);
    const entry = await waitFor("the lint.failed audit entry", async () => {
      const [row] = await sql`select subject, result, details from audit_log where kind = 'lint.failed' and details->>'profile' = 'tls-server-broken'`;
      return row;
    });
    expect(entry.result).toBe("error");
    expect(entry.details).toMatchObject({ rule: "key-usage-key-type", linted: "certificate", role: "leaf", subject: "CN=web.example.test" });
    expect(entry.subject).toMatch(/^[0-9a-f]+$/);

    // The shipped profile, same CSR: the normal path passes the gate.
    const good = await t.api("POST", "/api/v1/certificates", { token: await t.token("issuer", "tls-server"), json: { csr, profile: "tls-server" } });
    expect(good.status).toBe(201);
  });
});
