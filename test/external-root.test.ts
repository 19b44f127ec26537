/**
 * hsm-ca below an external root, as an enterprise would run it: a root
 * made with openssl (its key never reaches hsm-ca), `hsm-ca init
 * --external-root` making the issuing key in SoftHSM2 and its CSR, openssl
 * signing it as the enterprise CA, `hsm-ca ceremony import-intermediate`
 * (and its refusals), then the real service on PostgreSQL issuing over REST
 * and ACME, with openssl, Go and GnuTLS verifying against the external root,
 * revocation in the intermediate's CRL and OCSP, and a rotation that waits
 * for the next signed certificate while issuance goes on.
 */
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AcmeClient, type Account } from "./helpers/acme-client.ts";
import { keyAuthorization, newAccountKey } from "./helpers/acme-jws.ts";
import { REPO, runCliInProcess } from "./helpers/cli.ts";
import { makeCsr, openssl, tempDir, x509Text } from "./helpers/openssl.ts";
import { createTestDatabase } from "./helpers/postgres.ts";
import { parsePrometheusText } from "./helpers/prometheus.ts";
import { fetchBytes, RelyingParty } from "./helpers/relying-party.ts";
import { verifyWithAll } from "./helpers/relying-parties.ts";
import { startTestService, type TestService } from "./helpers/service.ts";
import { waitFor } from "./helpers/wait.ts";

const work = tempDir("hsmca-extroot-");
const dataDir = tempDir("hsmca-extroot-data-");
const rp = new RelyingParty();
let db: { url: string; drop(): Promise<void> };
let env: Record<string, string>;
let t: TestService | undefined;
let http01: http.Server;
const challengeBodies = new Map<string, string>();

const file = (name: string) => path.join(work, name);
const read = (name: string) => fs.readFileSync(file(name), "utf8");
const cli = (...args: string[]) => runCliInProcess(args, env, work);

/** The enterprise CA's side, with openssl: `name`.pem signed by `ca` (its key ca.key) from a CSR, with these extensions. */
function sign(csr: string, ca: string, name: string, extensions: string, days = "365"): string {
  fs.writeFileSync(file(`${name}.ext`), extensions);
  openssl(["x509", "-req", "-in", file(csr), "-CA", file(`${ca}.pem`), "-CAkey", file(`${ca}.key`), "-days", days, "-extfile", file(`${name}.ext`), "-out", file(`${name}.pem`)]);
  return read(`${name}.pem`);
}

/** A self-signed certificate made with openssl req -x509. */
function selfSigned(name: string, subject: string, extensions: string[]): void {
  openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", file(`${name}.key`), "-out", file(`${name}.pem`), "-subj", subject, "-days", "3650", ...extensions.flatMap((e) => ["-addext", e])]);
}

const CA_EXTENSIONS = (pathLen: number) =>
  `basicConstraints=critical,CA:TRUE,pathlen:${pathLen}\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n`;

function expectOneLineRefusal(r: { code: number; stdout: string; stderr: string }, message: RegExp): void {
  expect(r.code, r.stdout + r.stderr).toBe(1);
  expect(r.stderr.trim().split("\n"), r.stderr).toHaveLength(1);
  expect(r.stderr).toMatch(message);
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve((server.address() as net.AddressInfo).port));
  });
}

beforeAll(async () => {
  db = await createTestDatabase();
  http01 = http.createServer((req, res) => {
    const token = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(req.url ?? "")?.[1];
    const body = token === undefined ? undefined : challengeBodies.get(token);
    if (body === undefined) res.writeHead(404).end();
    else res.writeHead(200, { "content-type": "text/plain" }).end(body);
  });
  env = {
    HSM_CA_DATA_DIR: dataDir,
    DATABASE_URL: db.url,
    HSM_CA_PROFILES_DIR: path.join(REPO, "profiles"),
    // hsm-ca rotate acts at once (the approval gate has its own tests).
    HSM_CA_CA_CHANGE_APPROVALS: "0",
    HSM_CA_ACME_HTTP01_PORT: String(await listen(http01)),
    HSM_CA_HTTP_PORT: "0",
    HSM_CA_HTTPS_PORT: "0",
  };
  // The enterprise root: made and kept by openssl, as an existing root would be.
  selfSigned("external-root", "/CN=Example Enterprise Root/O=Example", ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"]);
});

afterAll(async () => {
  await t?.stop();
  await new Promise<void>((resolve) => (http01 ? http01.close(() => resolve()) : resolve()));
  await db?.drop();
  rp.cleanup();
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe("init --external-root", () => {
  it("refuses a root file that is not a self-signed CA certificate valid now, and stores nothing", async () => {
    selfSigned("not-a-ca", "/CN=Not A CA", ["basicConstraints=critical,CA:FALSE"]);
    expectOneLineRefusal(await cli("init", "--external-root", "not-a-ca.pem", "--csr-out", "x.csr"), /not a CA certificate: basicConstraints CA:TRUE is missing/);
    makeCsrFile("sub.csr");
    sign("sub.csr", "external-root", "not-self-signed", CA_EXTENSIONS(0));
    expectOneLineRefusal(await cli("init", "--external-root", "not-self-signed.pem"), /is not a self-signed root: it is issued by CN=Example Enterprise Root/);
    fs.writeFileSync(file("garbage.pem"), "hello\n");
    expectOneLineRefusal(await cli("init", "--external-root", "garbage.pem"), /no PEM certificate/);
    const missing = await cli("init", "--external-root", "nowhere.pem");
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--external-root nowhere.pem: cannot read it \(ENOENT\)/);
    expect(fs.existsSync(file("x.csr"))).toBe(false);
    const status = await cli("status");
    expect(status.code).toBe(1);
    expect(status.stdout).toMatch(/No CA yet/);
  });

  it("stores the root, makes the intermediate's key in the HSM and writes a CSR signed by it, asking for a CA", async () => {
    const r = await cli("init", "--external-root", "external-root.pem", "--csr-out", "int.csr", "--intermediate-subject", "CN=Example Issuing CA 1,O=Example");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/Wrote .*int\.csr/);
    expect(r.stdout).toMatch(/EXTERNAL ROOT CA\s+CN=Example Enterprise Root, O=Example/);
    expect(r.stdout).toMatch(/awaiting the external root's signature\s+CN=Example Issuing CA 1, O=Example/);
    expect(r.stdout).toMatch(/waiting since\s+\d{4}-\d\d-\d\dT/);
    expect(r.stdout).toMatch(/import-intermediate --cert/);
    expect(r.stdout).not.toMatch(/BEGIN CERTIFICATE REQUEST/);
    const text = openssl(["req", "-in", file("int.csr"), "-verify", "-noout", "-text"]);
    expect(text).toMatch(/Subject: CN = Example Issuing CA 1, O = Example/);
    expect(text).toMatch(/Basic Constraints: critical\s+CA:TRUE/);
    expect(text).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(text).toMatch(/ASN1 OID: prime256v1/);

    // Again: the same key and CSR, nothing new on the token.
    const again = await cli("init", "--external-root", "external-root.pem");
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/\(stored before\)/);
    expect(again.stdout).toMatch(/made before: one key waits at a time/);
    expect(again.stdout).toContain(read("int.csr").trim());

    const csr = await cli("ceremony", "pending-csr", "--out", "again.csr");
    expect(csr.code, csr.stderr).toBe(0);
    expect(read("again.csr")).toBe(read("int.csr"));

    // Another root now is refused: one external root.
    selfSigned("other-root", "/CN=Other Root", ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"]);
    expectOneLineRefusal(await cli("init", "--external-root", "other-root.pem"), /another external root is stored already: CN=Example Enterprise Root/);
  });
});

function makeCsrFile(name: string, subject = "/CN=Some CA"): void {
  fs.writeFileSync(file(name), makeCsr({ subject }).csr);
}

describe("ceremony import-intermediate refusals: one line, exit 1, nothing stored", () => {
  const nothingStored = async () => {
    const s = await cli("status");
    expect(s.stdout).not.toMatch(/INTERMEDIATE CA \(active\)/);
    expect(s.stdout).toMatch(/awaiting the external root's signature/);
    expect((await cli("ceremony", "pending-csr")).code).toBe(0);
  };

  it("a certificate for another key", async () => {
    makeCsrFile("foreign.csr", "/CN=Example Issuing CA 1/O=Example");
    sign("foreign.csr", "external-root", "foreign", CA_EXTENSIONS(1));
    expectOneLineRefusal(await cli("ceremony", "import-intermediate", "--cert", "foreign.pem"), /certifies a key hsm-ca is not waiting for .* the waiting key is hsm-ca\/intermediate\//);
    await nothingStored();
  });

  it("a certificate that is not a CA", async () => {
    sign("int.csr", "external-root", "not-ca", "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n");
    expectOneLineRefusal(await cli("ceremony", "import-intermediate", "--cert", "not-ca.pem"), /not a CA certificate: basicConstraints CA:TRUE is missing/);
    sign("int.csr", "external-root", "no-crl-sign", "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n");
    expectOneLineRefusal(await cli("ceremony", "import-intermediate", "--cert", "no-crl-sign.pem"), /may not sign CRLs: keyUsage lacks cRLSign/);
    await nothingStored();
  });

  it("a certificate signed by another root", async () => {
    sign("int.csr", "other-root", "wrong-root", CA_EXTENSIONS(1));
    expectOneLineRefusal(await cli("ceremony", "import-intermediate", "--cert", "wrong-root.pem"), /is not signed by the stored root CN=Example Enterprise Root, O=Example: give the certificates between them with --chain/);
    // Nor does a chain through the other root help.
    expectOneLineRefusal(await cli("ceremony", "import-intermediate", "--cert", "wrong-root.pem", "--chain", "other-root.pem"), /is not signed by the stored root/);
    await nothingStored();
  });

  it("an expired certificate", async () => {
    sign("int.csr", "external-root", "expired", CA_EXTENSIONS(1), "-1");
    expectOneLineRefusal(await cli("ceremony", "import-intermediate", "--cert", "expired.pem"), /has expired: notAfter/);
    await nothingStored();
  });
});

let intermediatePem: string;

describe("the service below the external root", () => {
  it("import-intermediate activates the signed certificate", async () => {
    intermediatePem = sign("int.csr", "external-root", "intermediate", CA_EXTENSIONS(1));
    const r = await cli("ceremony", "import-intermediate", "--cert", "intermediate.pem");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Key ceremony: import-intermediate/);
    expect(r.stdout).toMatch(/INTERMEDIATE CA\s+CN=Example Issuing CA 1, O=Example/);
    expect(r.stdout).toMatch(/key provenance\s+local=true sensitive=true extractable=false neverExtractable=true/);
    const again = await cli("ceremony", "import-intermediate", "--cert", "intermediate.pem");
    expectOneLineRefusal(again, /certifies a key hsm-ca is not waiting for .* no key is waiting/);
    const status = await cli("status");
    expect(status.stdout).toMatch(/ROOT CA \(active\)\s+CN=Example Enterprise Root, O=Example\n\s+valid .*\n\s+key\s+external \(ecdsa-p256\): not on this HSM/);
    expect(status.stdout).toMatch(/INTERMEDIATE CA \(active\)\s+CN=Example Issuing CA 1, O=Example/);
    expect(status.stdout).not.toMatch(/awaiting/);
  });

  it("starts and serves the external root, the chain, the bundle and the SPIFFE bundle", async () => {
    t = await startTestService("postgres", env);
    const root = new x509.X509Certificate(read("external-root.pem"));
    expect(new x509.X509Certificate(t.rootPem).equal(root)).toBe(true);
    expect(new x509.X509Certificate(t.chainPem).equal(new x509.X509Certificate(intermediatePem))).toBe(true);
    const bundle = await (await fetch(`${t.service.httpUrl}/ca/bundle.pem`)).text();
    expect(bundle.trim()).toBe(read("external-root.pem").trim());
    const spiffe = await (await fetch(`${t.service.httpUrl}/ca/spiffe-bundle.json`)).json();
    expect(spiffe.keys.map((k: { x5c: string[] }) => k.x5c[0])).toEqual([Buffer.from(root.rawData).toString("base64")]);
  });

  let leafPem: string;

  it("issues over REST: openssl -x509_strict, Go and GnuTLS accept the leaf against the external root", async () => {
    const issuer = await t!.token("issuer", "tls-server");
    const res = await t!.api("POST", "/api/v1/certificates", { token: issuer, json: { csr: makeCsr({ san: "DNS:app.example.test" }).csr, profile: "tls-server" } });
    expect(res.status, res.text).toBe(201);
    expect(new x509.X509Certificate(res.body.chain).subject).toBe("CN=Example Issuing CA 1, O=Example");
    leafPem = res.body.certificate;
    fs.writeFileSync(file("leaf.pem"), leafPem);
    fs.writeFileSync(file("chain.pem"), res.body.chain);
    const strict = await rp.openssl(["verify", "-x509_strict", "-CAfile", file("external-root.pem"), "-untrusted", file("chain.pem"), file("leaf.pem")]);
    expect(strict.ok, strict.out).toBe(true);
    const all = await verifyWithAll({ roots: [read("external-root.pem")], intermediates: [res.body.chain], leaf: leafPem, purpose: "serverAuth" });
    expect(all.openssl.ok, all.openssl.detail).toBe(true);
    expect(all.go.ok, all.go.detail).toBe(true);
    expect(all.gnutls.ok, all.gnutls.detail).toBe(true);
  });

  it("issues over ACME with the chain to the external root", async () => {
    const acme = new AcmeClient(t!.service.httpsUrl, t!.rootPem);
    try {
      await acme.init();
      const key = newAccountKey("ES256");
      const created = await acme.post(acme.directory.newAccount, key, { termsOfServiceAgreed: true });
      expect(created.status, created.text).toBe(201);
      const account: Account = { key, url: created.location! };
      const order = await acme.postAs(account, acme.directory.newOrder, { identifiers: [{ type: "ip", value: "127.0.0.1" }] });
      expect(order.status, order.text).toBe(201);
      for (const authzUrl of order.body.authorizations as string[]) {
        const authz = await acme.postAs(account, authzUrl, "");
        const ch = authz.body.challenges.find((c: { type: string }) => c.type === "http-01");
        challengeBodies.set(ch.token, keyAuthorization(ch.token, key.jwk));
        await acme.postAs(account, ch.url, {});
        await acme.poll(account, authzUrl, (b) => b.status !== "pending");
      }
      await acme.poll(account, order.location!, (b) => b.status === "ready");
      const { csr } = makeCsr({ subject: "/CN=127.0.0.1", san: "IP:127.0.0.1" });
      const der = Buffer.from(csr.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64").toString("base64url");
      await acme.postAs(account, order.body.finalize, { csr: der });
      const valid = (await acme.poll(account, order.location!, (b) => b.status === "valid")).res.body;
      const dl = await acme.postAs(account, valid.certificate, "");
      expect(dl.status).toBe(200);
      const blocks = dl.text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
      // Leaf and intermediate: never the root.
      expect(blocks.map((b) => new x509.X509Certificate(b).subject)).toEqual(["CN=127.0.0.1", "CN=Example Issuing CA 1, O=Example"]);
      const all = await verifyWithAll({ roots: [read("external-root.pem")], intermediates: [blocks[1]!], leaf: blocks[0]!, purpose: "serverAuth" });
      expect(all.openssl.ok, all.openssl.detail).toBe(true);
      expect(all.go.ok, all.go.detail).toBe(true);
      expect(all.gnutls.ok, all.gnutls.detail).toBe(true);
    } finally {
      acme.close();
    }
  });

  it("a revocation shows in the intermediate's CRL and OCSP", async () => {
    const text = x509Text(leafPem);
    const crlUrl = /URI:(http\S+\.crl)/.exec(text)![1]!;
    const ocspUrl = /OCSP - URI:(http\S+)/.exec(text)![1]!;
    const serial = new x509.X509Certificate(leafPem).serialNumber.toLowerCase();
    const good = await rp.ocsp(ocspUrl, intermediatePem, read("external-root.pem"), { certPem: leafPem });
    expect(good.out, good.out).toMatch(/: good/);
    expect(good.out).toMatch(/Response verify OK/);

    const r = await cli("revoke", serial, "--reason", "keyCompromise");
    expect(r.code, r.stderr).toBe(0);
    await waitFor("the CRL lists the serial", async () => (await rp.crlText((await fetchBytes(crlUrl)).body)).toUpperCase().includes(serial.toUpperCase()), { timeoutMs: 15_000, intervalMs: 250 });
    const crlText = await rp.crlText((await fetchBytes(crlUrl)).body);
    expect(crlText).toMatch(/Issuer: CN = Example Issuing CA 1, O = Example/);
    expect(crlText).toMatch(/Key Compromise/);
    const crlFile = await rp.crlPem((await fetchBytes(crlUrl)).body);
    const refused = await rp.verify(read("external-root.pem"), intermediatePem, leafPem, [crlFile]);
    expect(refused.ok).toBe(false);
    expect(refused.out).toMatch(/certificate revoked/);
    const revoked = await waitFor("OCSP says revoked", async () => {
      const o = await rp.ocsp(ocspUrl, intermediatePem, read("external-root.pem"), { certPem: leafPem });
      return /: revoked/.test(o.out) ? o : undefined;
    });
    expect(revoked.out).toMatch(/Reason: keyCompromise/);
    expect(revoked.out).toMatch(/Response verify OK/);
  });

  it("hsm-ca never signs with the external root: no CRL for it, its own ceremonies refused", async () => {
    const cas = await t!.api("GET", "/api/v1/cas", { token: await t!.token("auditor") });
    const root = cas.body.items.find((c: { role: string }) => c.role === "root");
    expect(root.keyOrigin).toBe("external");
    expect(root.keyProvenance).toBeNull();
    const ours = cas.body.items.find((c: { role: string; status: string }) => c.role === "intermediate" && c.status === "active");
    expect((await fetch(`${t!.service.httpUrl}/crl/${ours.id}.crl`)).status).toBe(200);
    expect((await fetch(`${t!.service.httpUrl}/crl/${root.id}.crl`)).status).toBe(404);
    expectOneLineRefusal(await cli("ceremony", "sign-root-crl"), /the root CN=Example Enterprise Root, O=Example is external: its CRL is published by the CA that holds its key/);
    expectOneLineRefusal(await cli("ceremony", "sign-intermediate"), /is external: its CA signs the intermediate/);
  });
});

describe("rotation below the external root", () => {
  let nextCsr: string;

  const issueOne = async (name: string) => {
    const issuer = await t!.token("issuer", "tls-server");
    const res = await t!.api("POST", "/api/v1/certificates", { token: issuer, json: { csr: makeCsr({ san: `DNS:${name}.example.test` }).csr, profile: "tls-server" } });
    expect(res.status, res.text).toBe(201);
    return res.body as { certificate: string; chain: string };
  };

  it("prepares the next key and CSR once and waits; status, /metrics, the API and the dashboard say since when", async () => {
    const r = await cli("rotate");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Prepared the next intermediate's key and CSR\. CN=Example Issuing CA 1, O=Example keeps issuing meanwhile/);
    const again = await cli("rotate");
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/A key already waits for the external root's signature; nothing new was made/);

    const status = await cli("status");
    const since = /waiting since\s+(\S+)/.exec(status.stdout)?.[1];
    expect(since, status.stdout).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(status.stdout).toMatch(/awaiting the external root's signature\s+CN=Example Issuing CA 2, O=Example/);
    expect(status.stdout).toMatch(/why\s+hsm-ca rotate/);
    expect(status.stdout.match(/awaiting the external root's signature/g)).toHaveLength(1);

    const csr = await cli("ceremony", "pending-csr", "--out", "next.csr");
    expect(csr.code, csr.stderr).toBe(0);
    nextCsr = read("next.csr");
    expect(openssl(["req", "-in", file("next.csr"), "-verify", "-noout", "-subject"])).toMatch(/CN = Example Issuing CA 2, O = Example/);

    const metrics = parsePrometheusText(await (await fetch(`${t!.service.httpUrl}/metrics`)).text());
    const waiting = metrics.samples.filter((s) => s.name === "hsmca_intermediate_awaiting_signature_seconds");
    expect(waiting).toHaveLength(1);
    expect(waiting[0]!.labels.subject).toBe("CN=Example Issuing CA 2, O=Example");
    expect(waiting[0]!.labels.reason).toBe("hsm-ca rotate");
    expect(waiting[0]!.value).toBeGreaterThanOrEqual(0);
    expect(waiting[0]!.value).toBeLessThan(600);

    const admin = await t!.token("admin");
    const pending = await t!.api("GET", "/api/v1/cas/pending", { token: admin });
    expect(pending.status).toBe(200);
    expect(pending.body.items).toHaveLength(1);
    expect(pending.body.items[0].csr).toBe(nextCsr);
    expect(pending.body.items[0].awaitingSignatureSince).toBe(since);

    const page = await dashboardPage(await t!.token("auditor"));
    expect(page).toMatch(/Awaiting signature/);
    expect(page).toMatch(/CN=Example Issuing CA 2, O=Example: waiting for the external root&#39;s signature since|CN=Example Issuing CA 2, O=Example: waiting for the external root's signature since/);
  });

  it("issuance goes on with the current intermediate meanwhile", async () => {
    const issued = await issueOne("during");
    expect(new x509.X509Certificate(issued.certificate).issuer).toBe("CN=Example Issuing CA 1, O=Example");
  });

  it("the new certificate, signed through an enterprise policy CA, needs --chain; then it issues and the old one retires", async () => {
    // The enterprise signs through a policy CA this time: root -> policy CA -> hsm-ca's intermediate.
    openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", file("policy.key")]);
    openssl(["req", "-new", "-key", file("policy.key"), "-subj", "/CN=Example Policy CA/O=Example", "-out", file("policy.csr")]);
    sign("policy.csr", "external-root", "policy", CA_EXTENSIONS(2));
    fs.writeFileSync(file("next.csr"), nextCsr);
    sign("next.csr", "policy", "intermediate-2", CA_EXTENSIONS(1));

    expectOneLineRefusal(await cli("ceremony", "import-intermediate", "--cert", "intermediate-2.pem"), /is not signed by the stored root .*give the certificates between them with --chain/);
    const r = await cli("ceremony", "import-intermediate", "--cert", "intermediate-2.pem", "--chain", "policy.pem");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/chain through\s+CN=Example Policy CA, O=Example \(external/);
    expect(r.stdout).toMatch(/Retired CN=Example Issuing CA 1, O=Example/);

    const issued = await waitFor("new leaves come from the new intermediate", async () => {
      const i = await issueOne("after");
      return new x509.X509Certificate(i.certificate).issuer === "CN=Example Issuing CA 2, O=Example" ? i : undefined;
    });
    const chain = issued.chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g)!;
    expect(chain.map((c) => new x509.X509Certificate(c).subject)).toEqual(["CN=Example Issuing CA 2, O=Example", "CN=Example Policy CA, O=Example"]);
    const served = await (await fetch(`${t!.service.httpUrl}/ca/chain.pem`)).text();
    expect(served).toBe(issued.chain);
    const all = await verifyWithAll({ roots: [read("external-root.pem")], intermediates: [issued.chain], leaf: issued.certificate, purpose: "serverAuth" });
    expect(all.openssl.ok, all.openssl.detail).toBe(true);
    expect(all.go.ok, all.go.detail).toBe(true);
    expect(all.gnutls.ok, all.gnutls.detail).toBe(true);

    const status = await cli("status");
    expect(status.stdout).toMatch(/INTERMEDIATE CA \(retired\)\s+CN=Example Issuing CA 1, O=Example/);
    expect(status.stdout).toMatch(/INTERMEDIATE CA \(active\)\s+CN=Example Issuing CA 2, O=Example/);
    expect(status.stdout).toMatch(/INTERMEDIATE CA \(active\)\s+CN=Example Policy CA, O=Example\n\s+valid .*\n\s+key\s+external/);
    expect(status.stdout).not.toMatch(/awaiting/);
    const metrics = await (await fetch(`${t!.service.httpUrl}/metrics`)).text();
    expect(metrics).not.toMatch(/^hsmca_intermediate_awaiting_signature_seconds\{/m);
  });
});

/** The dashboard's HTML as an auditor who signed in sees it. */
async function dashboardPage(token: string): Promise<string> {
  const login = await t!.api("POST", "/dashboard/login", {
    raw: new URLSearchParams({ token }).toString(),
    headers: { "content-type": "application/x-www-form-urlencoded", origin: new URL(t!.service.httpsUrl).origin },
  });
  expect(login.status, login.text).toBe(303);
  const cookie = String(login.headers["set-cookie"]).split(";")[0]!;
  const page = await t!.api("GET", "/dashboard", { headers: { cookie } });
  expect(page.status).toBe(200);
  return page.text;
}
