import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDnsServer, type DnsServer } from "./helpers/challtestsrv.ts";
import { REPO, runCli, runCliInProcess } from "./helpers/cli.ts";
import { makeCsr, tempDir } from "./helpers/openssl.ts";
import { freePort } from "./helpers/ports.ts";
import { RelyingParty } from "./helpers/relying-party.ts";
import { verifyWithAll, type ChainInput } from "./helpers/relying-parties.ts";
import { run } from "./helpers/run.ts";
import { copyMigratedPglite } from "./helpers/pglite-template.ts";
import { startTestService, type TestService } from "./helpers/service.ts";
import { waitFor } from "./helpers/wait.ts";

/**
 * A root rollover as an operator runs it: init, issue, `ceremony
 * rollover-root`, issue during the overlap (also after a rotation),
 * `ceremony retire-root`, issue again. Every leaf is checked by openssl
 * (-x509_strict), Go, GnuTLS and NSS against only the old root and against only
 * the new root, with the chain each one needs; certbot and lego pick the
 * chain they ask for with --preferred-chain.
 */
let t: TestService;
let dns: DnsServer;
let work: string;
let adminToken: string;
let http01Port: number;
let directory: string;
let oldRoot: string;
let newRoot: string;
const rp = new RelyingParty();

const OLD_ROOT_CN = "hsm-ca Root CA";
const NEW_ROOT_CN = "hsm-ca Root CA 2";

beforeAll(async () => {
  dns = await startDnsServer();
  work = tempDir("hsmca-rollover-");
  http01Port = await freePort();
  const acmeProfiles = path.join(work, "acme-profiles");
  fs.mkdirSync(acmeProfiles);
  fs.copyFileSync(path.join(REPO, "profiles/acme/default.yaml"), path.join(acmeProfiles, "default.yaml"));
  t = await startTestService("postgres", {
    HSM_CA_ACME_PROFILES_DIR: acmeProfiles,
    HSM_CA_ACME_RESOLVERS: dns.address,
    HSM_CA_ACME_HTTP01_PORT: String(http01Port),
    // `hsm-ca rotate` rotates at once, without M-of-N approvals.
    HSM_CA_CA_CHANGE_APPROVALS: "0",
  });
  oldRoot = t.rootPem;
  adminToken = await t.token("admin");
  directory = `https://localhost:${new URL(t.service.httpsUrl).port}/acme/directory`;
}, 60_000);

afterAll(async () => {
  await t?.stop();
  dns?.stop();
  rp.cleanup();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

const pemBlocks = (pem: string) => pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
const cnOf = (name: string) => new x509.Name(name).getField("CN")[0];
const cert = (pem: string) => new x509.X509Certificate(pem);
const text = async (p: string) => (await fetch(t.service.httpUrl + p)).text();

async function issueOverRest(name: string): Promise<{ leaf: string; chain: string }> {
  const res = await t.api("POST", "/api/v1/certificates", { token: adminToken, json: { csr: makeCsr({ san: `DNS:${name}` }).csr, profile: "tls-server" } });
  expect(res.status, res.text).toBe(201);
  return { leaf: res.body.certificate, chain: res.body.chain };
}

/** Cross certificates as served at /ca/cross.pem, by what they certify and who signed them. */
async function crossCertificate(subjectCn: string, issuerCn: string): Promise<string> {
  const found = pemBlocks(await text("/ca/cross.pem")).find((p) => cnOf(cert(p).subject) === subjectCn && cnOf(cert(p).issuer) === issuerCn);
  expect(found, `a cross certificate for ${subjectCn} signed by ${issuerCn}`).toBeDefined();
  return found!;
}

async function expectAccepted(input: ChainInput): Promise<void> {
  const verdicts = await verifyWithAll({ ...input, purpose: "serverAuth" });
  for (const [who, v] of Object.entries(verdicts)) expect(v.ok, `${who}: ${v.detail}`).toBe(true);
}

async function expectRefused(input: ChainInput): Promise<void> {
  const verdicts = await verifyWithAll({ ...input, purpose: "serverAuth" });
  for (const [who, v] of Object.entries(verdicts)) expect(v.ok, `${who} should refuse: ${v.detail}`).toBe(false);
}

describe("certbot and lego", () => {
  const certbot = (name: string, extra: string[]) => {
    const dir = path.join(work, "certbot");
    return run(
      "certbot",
      [
        "certonly", "--standalone", "--non-interactive", "--agree-tos", "-m", "admin@example.test",
        "--server", directory, "--http-01-port", String(http01Port), "--http-01-address", "127.0.0.1",
        "-d", name, "--key-type", "ecdsa", "--elliptic-curve", "secp256r1",
        "--config-dir", `${dir}/config`, "--work-dir", `${dir}/work`, "--logs-dir", `${dir}/logs`, ...extra,
      ],
      { env: { REQUESTS_CA_BUNDLE: path.join(work, "old-root.pem") } },
    ).then((r) => {
      expect(r.output).toMatch(/Successfully received certificate/);
      const live = (file: string) => fs.readFileSync(path.join(dir, "config/live", name, file), "utf8");
      return { leaf: live("cert.pem"), chain: live("chain.pem") };
    });
  };
  const lego = async (name: string, extra: string[]) => {
    const dir = path.join(work, "lego");
    const r = await run(
      "lego",
      ["--server", directory, "--accept-tos", "--email", "admin@example.test", "--path", dir, "--key-type", "ec256", "--http", "--http.port", `127.0.0.1:${http01Port}`, "-d", name, "run", ...extra],
      { env: { LEGO_CA_CERTIFICATES: path.join(work, "old-root.pem") }, cwd: work },
    );
    expect(r.output).toMatch(/Server responded with a certificate/);
    const [leaf, ...chain] = pemBlocks(fs.readFileSync(path.join(dir, "certificates", `${name}.crt`), "utf8"));
    return { leaf: leaf!, chain: chain.join("") };
  };
  /** The issuer CN of the chain's topmost certificate: what --preferred-chain matches. */
  const topIssuer = (chain: string) => cnOf(cert(pemBlocks(chain).at(-1)!).issuer);

  let leafBefore: { leaf: string; chain: string };

  it("refuses to retire a root before a rollover, and bad rollover options, in one line", async () => {
    fs.writeFileSync(path.join(work, "old-root.pem"), oldRoot);
    leafBefore = await issueOverRest("before.example.test");
    const retire = await runCliInProcess(["ceremony", "retire-root"], t.env);
    expect(retire.code).toBe(1);
    expect(retire.stderr.trim()).toMatch(/^.*no root rollover is under way[^\n]*$/);
    const badAlg = await runCliInProcess(["ceremony", "rollover-root", "--root-algorithm", "dsa-1024"], t.env);
    expect(badAlg.code).toBe(2);
    expect(badAlg.stderr).toMatch(/--root-algorithm "dsa-1024" is not one of/);
    const badDays = await runCliInProcess(["ceremony", "rollover-root", "--root-validity-days", "ten"], t.env);
    expect(badDays.code).toBe(2);
    const sameName = await runCliInProcess(["ceremony", "rollover-root", "--root-subject", `CN=${OLD_ROOT_CN}, O=Another`], t.env);
    expect(sameName.code, sameName.stdout).toBe(1);
    expect(sameName.stderr).toMatch(/common name other than the old root's/);
    // None of these made a root.
    expect(pemBlocks(await text("/ca/bundle.pem"))).toHaveLength(1);
  });

  it("rollover-root makes the new root, cross-signs it and re-signs the intermediate; a second one is refused", async () => {
    const r = await runCliInProcess(["ceremony", "rollover-root"], t.env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Key ceremony: rollover-root/);
    expect(r.stdout).toContain(`ROOT CA  CN=${NEW_ROOT_CN}, O=hsm-ca`);
    expect(r.stdout).toMatch(new RegExp(`CROSS CERTIFICATE  CN=${NEW_ROOT_CN}, O=hsm-ca\\n  signed by            CN=${OLD_ROOT_CN}, O=hsm-ca`));
    expect(r.stdout).toMatch(new RegExp(`CROSS CERTIFICATE  CN=hsm-ca Issuing CA 1, O=hsm-ca\\n  signed by            CN=${NEW_ROOT_CN}, O=hsm-ca`));
    const again = await runCliInProcess(["ceremony", "rollover-root"], t.env);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/a root rollover is under way already \(incoming root CN=hsm-ca Root CA 2, O=hsm-ca\)/);

    const bundle = pemBlocks(await text("/ca/bundle.pem"));
    expect(bundle.map((p) => cnOf(cert(p).subject)).sort()).toEqual([OLD_ROOT_CN, NEW_ROOT_CN]);
    const spiffe = await (await fetch(`${t.service.httpUrl}/ca/spiffe-bundle.json`)).json();
    expect(spiffe.keys).toHaveLength(2);
    newRoot = bundle.find((p) => cnOf(cert(p).subject) === NEW_ROOT_CN)!;
    fs.writeFileSync(path.join(work, "new-root.pem"), newRoot);
    // The old root stays the default during the overlap.
    expect(await text("/ca/root.pem")).toBe(oldRoot);
    expect(pemBlocks(await text("/ca/chain.pem")).map((p) => cnOf(cert(p).issuer))).toEqual([OLD_ROOT_CN]);

    // The cross certificate: the new root's subject and key, issued and identified by the old root, with the same path length.
    const cross = cert(await crossCertificate(NEW_ROOT_CN, OLD_ROOT_CN));
    const nr = cert(newRoot);
    expect(Buffer.from(cross.publicKey.rawData).equals(Buffer.from(nr.publicKey.rawData))).toBe(true);
    expect(cross.getExtension(x509.BasicConstraintsExtension)!.pathLength).toBe(nr.getExtension(x509.BasicConstraintsExtension)!.pathLength);
    expect(cross.getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId).toBe(cert(oldRoot).getExtension(x509.SubjectKeyIdentifierExtension)!.keyId);
    expect(cross.notAfter.getTime()).toBeLessThanOrEqual(cert(oldRoot).notAfter.getTime());
  });

  it("during the overlap, old and new leaves verify with only the old root and with only the new root", async () => {
    const during = await issueOverRest("during.example.test");
    const resigned = await crossCertificate("hsm-ca Issuing CA 1", NEW_ROOT_CN);
    const cross = await crossCertificate(NEW_ROOT_CN, OLD_ROOT_CN);
    for (const { leaf, chain } of [leafBefore, during]) {
      await expectAccepted({ roots: [oldRoot], intermediates: [chain], leaf });
      await expectAccepted({ roots: [newRoot], intermediates: [resigned], leaf });
      await expectAccepted({ roots: [oldRoot], intermediates: [resigned, cross], leaf });
    }
    // What makes the checks above mean something: the default chain alone does not reach the new root.
    await expectRefused({ roots: [newRoot], intermediates: [during.chain], leaf: during.leaf });
  });

  it("certbot --preferred-chain gets the chain to the new root, and the default without it", { timeout: 120_000 }, async () => {
    const preferred = await certbot("cb-new.example.test", ["--preferred-chain", NEW_ROOT_CN]);
    expect(topIssuer(preferred.chain)).toBe(NEW_ROOT_CN);
    await expectAccepted({ roots: [newRoot], intermediates: [preferred.chain], leaf: preferred.leaf });
    const plain = await certbot("cb-default.example.test", []);
    expect(topIssuer(plain.chain)).toBe(OLD_ROOT_CN);
    await expectAccepted({ roots: [oldRoot], intermediates: [plain.chain], leaf: plain.leaf });
  });

  it("lego --preferred-chain likewise", { timeout: 120_000 }, async () => {
    const preferred = await lego("lego-new.example.test", ["--preferred-chain", NEW_ROOT_CN]);
    expect(topIssuer(preferred.chain)).toBe(NEW_ROOT_CN);
    await expectAccepted({ roots: [newRoot], intermediates: [preferred.chain], leaf: preferred.leaf });
    const plain = await lego("lego-default.example.test", []);
    expect(topIssuer(plain.chain)).toBe(OLD_ROOT_CN);
  });

  it("a rotation during the overlap re-signs the new intermediate under the incoming root", async () => {
    const r = await runCliInProcess(["rotate"], t.env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`CROSS CERTIFICATE  CN=hsm-ca Issuing CA 2, O=hsm-ca\\n  signed by            CN=${NEW_ROOT_CN}, O=hsm-ca`));
    // The service notices the rotation (hierarchy watch) and issues from the new intermediate.
    const rotated = await waitFor("issuing from Issuing CA 2", async () => {
      const issued = await issueOverRest("rotated.example.test");
      return cnOf(cert(issued.leaf).issuer) === "hsm-ca Issuing CA 2" ? issued : undefined;
    });
    const resigned = await crossCertificate("hsm-ca Issuing CA 2", NEW_ROOT_CN);
    await expectAccepted({ roots: [oldRoot], intermediates: [rotated.chain], leaf: rotated.leaf });
    await expectAccepted({ roots: [newRoot], intermediates: [resigned], leaf: rotated.leaf });
    await expectAccepted({ roots: [oldRoot], intermediates: [resigned, await crossCertificate(NEW_ROOT_CN, OLD_ROOT_CN)], leaf: rotated.leaf });
  });

  it("OCSP answers for the cross certificates", async () => {
    const cross = await crossCertificate(NEW_ROOT_CN, OLD_ROOT_CN);
    const answer = await waitFor("an OCSP answer for the cross certificate", async () => {
      const r = await rp.ocsp(`${t.service.httpUrl}/ocsp`, oldRoot, oldRoot, { certPem: cross });
      return /: good/.test(r.out) ? r : undefined;
    });
    expect(answer.ok, answer.out).toBe(true);
  });

  it("retire-root makes the new root the default; the old root stays in the bundle and as an alternate chain", { timeout: 120_000 }, async () => {
    const r = await runCliInProcess(["ceremony", "retire-root"], t.env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Key ceremony: retire-root/);
    expect(r.stdout).toContain(`The root CN=${NEW_ROOT_CN}, O=hsm-ca is now the active root`);
    await waitFor("/ca/root.pem serves the new root", async () => (await text("/ca/root.pem")) === newRoot);
    expect(pemBlocks(await text("/ca/chain.pem")).map((p) => cnOf(cert(p).issuer))).toEqual([NEW_ROOT_CN]);
    expect(pemBlocks(await text("/ca/bundle.pem"))).toHaveLength(2);

    const after = await issueOverRest("after.example.test");
    expect(pemBlocks(after.chain).map((p) => cnOf(cert(p).issuer))).toEqual([NEW_ROOT_CN]);
    await expectAccepted({ roots: [newRoot], intermediates: [after.chain], leaf: after.leaf });
    // A relying party that still trusts only the old root: the intermediate under the old root, or the cross certificate.
    const underOld = await intermediateUnderOldRoot();
    await expectAccepted({ roots: [oldRoot], intermediates: [underOld], leaf: after.leaf });
    await expectAccepted({ roots: [oldRoot], intermediates: [after.chain, await crossCertificate(NEW_ROOT_CN, OLD_ROOT_CN)], leaf: after.leaf });
    await expectRefused({ roots: [oldRoot], intermediates: [after.chain], leaf: after.leaf });

    // ACME: the default is now the new root's chain, the old root's the alternate.
    const plain = await certbot("cb-after.example.test", []);
    expect(topIssuer(plain.chain)).toBe(NEW_ROOT_CN);
    const preferred = await certbot("cb-old.example.test", ["--preferred-chain", OLD_ROOT_CN]);
    expect(topIssuer(preferred.chain)).toBe(OLD_ROOT_CN);
    await expectAccepted({ roots: [oldRoot], intermediates: [preferred.chain], leaf: preferred.leaf });
    await expectRefused({ roots: [newRoot], intermediates: [pemBlocks(preferred.chain)[0]!], leaf: preferred.leaf });
  });

  it("after retire-root a new rollover may start (the retired root is not in the way)", async () => {
    const status = await runCliInProcess(["status"], t.env);
    expect(status.stdout).toMatch(/ROOT CA \(retired\)\s+CN=hsm-ca Root CA,/);
    expect(status.stdout).toMatch(/ROOT CA \(active\)\s+CN=hsm-ca Root CA 2,/);
    const r = await runCliInProcess(["ceremony", "rollover-root", "--root-validity-days", "365"], t.env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("ROOT CA  CN=hsm-ca Root CA 3, O=hsm-ca");
    expect(pemBlocks(await text("/ca/bundle.pem"))).toHaveLength(3);
    const third = pemBlocks(await text("/ca/bundle.pem")).find((p) => cnOf(cert(p).subject) === "hsm-ca Root CA 3")!;
    expect(cert(third).notAfter.getTime() - Date.now()).toBeLessThan(366 * 86_400_000);
    // Leaves now verify against each of the three roots alone.
    const leaf = await issueOverRest("third.example.test");
    await expectAccepted({ roots: [newRoot], intermediates: [leaf.chain], leaf: leaf.leaf });
    await expectAccepted({ roots: [third], intermediates: [await crossCertificate("hsm-ca Issuing CA 2", "hsm-ca Root CA 3")], leaf: leaf.leaf });
    await expectAccepted({ roots: [oldRoot], intermediates: [await intermediateUnderOldRoot()], leaf: leaf.leaf });
  });

  /** Issuing CA 2's own certificate (signed by the old root), served at its caIssuers URL. */
  async function intermediateUnderOldRoot(): Promise<string> {
    const cas = await t.api("GET", "/api/v1/cas", { token: adminToken });
    expect(cas.status).toBe(200);
    const ca = (cas.body.items as Array<{ subject: string; certificate: string }>).find((c) => c.subject === "CN=hsm-ca Issuing CA 2, O=hsm-ca");
    expect(ca).toBeDefined();
    const pem = ca!.certificate;
    expect(cnOf(cert(pem).issuer)).toBe(OLD_ROOT_CN);
    return pem;
  }
});

describe("an offline root", () => {
  // The root key on its own token, present only for ceremonies (as in root-ceremony.test.ts).
  const dataDir = tempDir("hsmca-rollover-offline-");
  const withRootToken = { HSM_CA_DATA_DIR: dataDir, HSM_CA_ROOT_TOKEN_LABEL: "offline-root" };
  const withoutRootToken = { HSM_CA_DATA_DIR: dataDir };
  beforeAll(() => copyMigratedPglite(dataDir));
  afterAll(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const privateKeysOn = (token: string) =>
    execFileSync(
      "pkcs11-tool",
      ["--module", "/usr/lib/softhsm/libsofthsm2.so", "--token-label", token, "--login", "--pin", fs.readFileSync(path.join(dataDir, "hsm/user.pin"), "utf8").trim(), "--list-objects", "--type", "privkey"],
      { encoding: "utf8", env: { ...process.env, SOFTHSM2_CONF: path.join(dataDir, "hsm/softhsm2.conf") } },
    );

  // In child processes: this process's SoftHSM2 already serves the service above, with another configuration.
  it("is rolled over only with its token present, and the new root key goes on the root token", { timeout: 120_000 }, async () => {
    const created = await runCli(["ceremony", "create-root"], withRootToken);
    expect(created.code, created.stderr).toBe(0);
    expect((await runCli(["ceremony", "sign-intermediate"], withRootToken)).code).toBe(0);
    const refused = await runCli(["ceremony", "rollover-root"], withoutRootToken);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/the root key is not available .*the old root must cross-sign the new one/);
    const r = await runCli(["ceremony", "rollover-root"], withRootToken);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Key ceremony: rollover-root .* on token "offline-root"/);
    expect(privateKeysOn("offline-root").match(/label:\s+hsm-ca\/root\//g)).toHaveLength(2);
    expect(privateKeysOn("hsm-ca")).not.toMatch(/hsm-ca\/root\//);
    // retire-root needs no root key once the intermediate has its certificate under the new root.
    const retired = await runCli(["ceremony", "retire-root"], withoutRootToken);
    expect(retired.code, retired.stderr).toBe(0);
    const crl = await runCli(["ceremony", "sign-root-crl"], withRootToken);
    expect(crl.code, crl.stderr).toBe(0);
    // The active (new) root's CRL and the retired root's: it still has live certificates.
    expect(crl.stdout).toMatch(/Published the root's CRL/);
    expect(crl.stdout).toMatch(/Published the retired root's CRL \(CN=hsm-ca Root CA, O=hsm-ca/);
  });
});

describe("an external root", () => {
  const dataDir = tempDir("hsmca-rollover-external-");
  beforeAll(() => copyMigratedPglite(dataDir));
  afterAll(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  it("cannot be rolled over by hsm-ca: one line, exit 1, nothing made", { timeout: 120_000 }, async () => {
    const root = path.join(dataDir, "external-root.pem");
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", path.join(dataDir, "external-root.key"),
      "-out", root, "-subj", "/CN=Example Enterprise Root/O=Example", "-days", "3650",
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    ], { stdio: "ignore" });
    const init = await runCli(["init", "--external-root", root, "--csr-out", path.join(dataDir, "int.csr")], { HSM_CA_DATA_DIR: dataDir });
    expect(init.code, init.stderr).toBe(0);
    const r = await runCli(["ceremony", "rollover-root"], { HSM_CA_DATA_DIR: dataDir });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/the root CN=Example Enterprise Root, O=Example is external: .* cannot roll it over/);
    const status = await runCli(["status"], { HSM_CA_DATA_DIR: dataDir });
    expect(status.stdout).not.toMatch(/incoming/);
  });
});
