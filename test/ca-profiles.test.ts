import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROBLEM_TYPE_PREFIX } from "../src/api/problem.ts";
import { addressAndMask } from "../src/ca/name-constraints.ts";
import { parseCsr } from "../src/csr/parse-csr.ts";
import { checkIssuerPathLength } from "../src/policy/ca-profile.ts";
import { decide } from "../src/policy/decide.ts";
import { isCaProfile, type CaProfile } from "../src/policy/profile-schema.ts";
import { loadAcmeProfiles, loadProfiles, ProfileError } from "../src/policy/profiles.ts";
import { countCertificates } from "../src/store/certificates.ts";
import { REPO, runCliInProcess } from "./helpers/cli.ts";
import { makeCsr, openssl, tempDir, x509Text } from "./helpers/openssl.ts";
import { fetchBytes, RelyingParty, within } from "./helpers/relying-party.ts";
import { verifyWithAll } from "./helpers/relying-parties.ts";
import { startTestService, type TestService } from "./helpers/service.ts";
import { signWithSoftwareCa, type SoftwareCa } from "./helpers/software-ca.ts";
import { waitFor } from "./helpers/wait.ts";

/**
 * CA certificates as a profile kind: the shipped mesh-intermediate profile
 * issues a name-constrained, pathLen-0 sub-CA after two admins approve, over
 * REST and the CLI. A software key certified that way signs workload SVIDs,
 * which OpenSSL (-x509_strict), Go's crypto/x509 and GnuTLS certtool accept
 * against hsm-ca's root, and names outside its constraints, which they
 * refuse. Its revocation shows in its issuer's OCSP and CRL. A hierarchy
 * whose intermediate has pathLen 0 refuses CA profiles until a rotation with
 * HSM_CA_INTERMEDIATE_PATH_LENGTH=1. The real service on PostgreSQL (so the
 * CLI opens the database itself, with its own settings).
 */
let t: TestService;
let rp: RelyingParty;
const tok = {} as Record<"requester" | "b" | "c" | "auditor" | "mesh" | "tls", string>;
const work = tempDir("hsmca-ca-profiles-");

beforeAll(async () => {
  // No M-of-N gate on rotations here (test/approvals.test.ts has it): `hsm-ca rotate` rotates at once.
  t = await startTestService("postgres", { HSM_CA_CA_CHANGE_APPROVALS: "0" });
  rp = new RelyingParty();
  Object.assign(tok, {
    requester: await t.token("admin"),
    b: await t.token("admin"),
    c: await t.token("admin"),
    auditor: await t.token("auditor"),
    mesh: await t.token("issuer", "mesh-intermediate"),
    tls: await t.token("issuer", "tls-server"),
  });
}, 120_000);
afterAll(async () => {
  await t?.stop();
  rp?.cleanup();
  fs.rmSync(work, { recursive: true, force: true });
});

const MESH_SUBJECT = "/CN=Mesh Issuer cluster-1/O=Example";
/** A mesh issuer's CSR: Linkerd's names itself with a DNS SAN, a SPIRE server's with its trust domain's ID. */
const meshCsr = (opts: { key?: "ec-p256" | "rsa-2048" | "rsa-3072"; san?: string } = {}) =>
  makeCsr({ key: opts.key ?? "ec-p256", subject: MESH_SUBJECT, san: opts.san ?? "DNS:identity.linkerd.cluster.local,URI:spiffe://cluster.local" });

const submit = (json: Record<string, unknown>, token = tok.requester) => t.api("POST", "/api/v1/certificates", { token, json: { profile: "mesh-intermediate", ...json } });
const approve = (id: string, token: string) => t.api("POST", `/api/v1/requests/${id}/approve`, { token });

/** Two admins other than the requester approve; the request is then done with its certificate. */
async function approveTwice(id: string): Promise<{ certificate: string; chain: string; serial: string }> {
  for (const admin of [tok.b, tok.c]) expect((await approve(id, admin)).status).toBe(200);
  const done = await waitFor(`request ${id} done`, async () => {
    const res = await t.api("GET", `/api/v1/requests/${id}`, { token: tok.auditor });
    return res.body.status === "done" ? res.body : undefined;
  });
  return { certificate: done.certificate, chain: done.chain, serial: done.result.serial };
}

const extensionText = (pem: string, ext: string) => execFileSync("openssl", ["x509", "-noout", "-ext", ext], { input: pem, encoding: "utf8" });
const ocspUrlOf = (pem: string) => /OCSP - URI:(\S+)/.exec(extensionText(pem, "authorityInfoAccess"))![1]!;
const crlUrlOf = (pem: string) => /URI:(\S+)/.exec(extensionText(pem, "crlDistributionPoints"))![1]!;

describe("mesh-intermediate over REST, after two admins approve", () => {
  let subCa: SoftwareCa & { serial: string; chain: string };

  it("waits for approval (202), then issues a CA certificate: pathLen 0, keyCertSign and cRLSign, critical name constraints, no EKU, the CSR's names", async () => {
    const { csr, keyPem } = meshCsr();
    const before = await countCertificates(t.service.ctx.store.db);
    const res = await submit({ csr, validity: "14d" });
    expect(res.status, res.text).toBe(202);
    expect(res.body).toMatchObject({ kind: "issue", status: "pending", required: 2 });
    // Nothing is signed before the approvals.
    expect(await countCertificates(t.service.ctx.store.db)).toBe(before);
    // The requester's own approval does not count.
    expect((await approve(res.body.id, tok.requester)).status).toBe(403);

    const issued = await approveTwice(res.body.id);
    subCa = { certPem: issued.certificate, keyPem, serial: issued.serial, chain: issued.chain };
    expect(issued.chain.trim()).toBe(t.chainPem.trim());

    const text = x509Text(issued.certificate);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign\n/);
    expect(text).not.toMatch(/Extended Key Usage/);
    expect(text).toMatch(/X509v3 Name Constraints: critical\s+Permitted:\s+DNS:cluster\.local\s+DNS:svc\s+URI:cluster\.local\s+URI:\.cluster\.local\s+Excluded:\s+IP:0\.0\.0\.0\/0\.0\.0\.0\s+IP:0:0:0:0:0:0:0:0\/0:0:0:0:0:0:0:0\n/);
    // The CSR's CN names the sub-CA; O is copied too (copyFromCsr).
    expect(text).toMatch(/Subject: O ?= ?Example, CN ?= ?Mesh Issuer cluster-1\n/);
    expect(text).toMatch(/X509v3 Subject Alternative Name: \n\s+DNS:identity\.linkerd\.cluster\.local, URI:spiffe:\/\/cluster\.local/);
    expect(text).toMatch(/X509v3 CRL Distribution Points/);
    expect(text).toMatch(/OCSP - URI:/);
    const cert = new x509.X509Certificate(issued.certificate);
    const days = (cert.notAfter.getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(13.9);
    expect(days).toBeLessThanOrEqual(14);

    // Stored like any certificate its issuer signs, under its profile.
    const stored = await t.api("GET", `/api/v1/certificates/${issued.serial}`, { token: tok.auditor });
    expect(stored.body).toMatchObject({ profile: "mesh-intermediate", status: "valid", certificate: issued.certificate });

    // The sub-CA itself chains to hsm-ca's root for all three relying parties.
    const v = await verifyWithAll({ roots: [t.rootPem], intermediates: [t.chainPem], leaf: issued.certificate });
    expect(v.openssl, v.openssl.detail).toMatchObject({ ok: true });
    expect(v.go, v.go.detail).toMatchObject({ ok: true });
    expect(v.gnutls, v.gnutls.detail).toMatchObject({ ok: true });
  });

  it("its software key signs a workload SVID that OpenSSL, Go and GnuTLS accept against hsm-ca's root", async () => {
    const svid = signWithSoftwareCa(subCa, { san: "URI:spiffe://cluster.local/ns/shop/sa/web,DNS:web.shop.svc.cluster.local" });
    const v = await verifyWithAll({ roots: [t.rootPem], intermediates: [t.chainPem, subCa.certPem], leaf: svid.certPem, purpose: "serverAuth" });
    expect(v.openssl, v.openssl.detail).toMatchObject({ ok: true });
    expect(v.go, v.go.detail).toMatchObject({ ok: true });
    expect(v.gnutls, v.gnutls.detail).toMatchObject({ ok: true });
    // istiod's serving name is a service name under svc.
    const istiod = signWithSoftwareCa(subCa, { subject: "/CN=istiod", san: "DNS:istiod.istio-system.svc" });
    const w = await verifyWithAll({ roots: [t.rootPem], intermediates: [t.chainPem, subCa.certPem], leaf: istiod.certPem, purpose: "serverAuth" });
    expect([w.openssl.ok, w.go.ok, w.gnutls.ok], JSON.stringify(w)).toEqual([true, true, true]);
  });

  it("what it signs outside its constraints is refused: another DNS suffix, an IP address, a sub-CA's leaf (pathLen 0) by all three; another trust domain by OpenSSL and Go", async () => {
    const chain = [t.chainPem, subCa.certPem];
    const otherSuffix = signWithSoftwareCa(subCa, { san: "URI:spiffe://cluster.local/ns/shop/sa/web,DNS:www.example.com" });
    const v1 = await verifyWithAll({ roots: [t.rootPem], intermediates: chain, leaf: otherSuffix.certPem, purpose: "serverAuth" });
    expect([v1.openssl.ok, v1.go.ok, v1.gnutls.ok], JSON.stringify(v1)).toEqual([false, false, false]);
    expect(v1.openssl.detail).toMatch(/permitted subtree violation/);
    expect(v1.go.detail).toMatch(/DNS name "www\.example\.com" is not permitted/);

    const ip = signWithSoftwareCa(subCa, { san: "URI:spiffe://cluster.local/ns/shop/sa/web,IP:10.0.0.1" });
    const v2 = await verifyWithAll({ roots: [t.rootPem], intermediates: chain, leaf: ip.certPem, purpose: "serverAuth" });
    expect([v2.openssl.ok, v2.go.ok, v2.gnutls.ok], JSON.stringify(v2)).toEqual([false, false, false]);
    expect(v2.openssl.detail).toMatch(/excluded subtree violation/);

    const subSub = signWithSoftwareCa(subCa, { subject: "/CN=Rogue Sub-CA", isCa: true });
    const deep = signWithSoftwareCa(subSub, { san: "URI:spiffe://cluster.local/ns/shop/sa/deep" });
    const v3 = await verifyWithAll({ roots: [t.rootPem], intermediates: [...chain, subSub.certPem], leaf: deep.certPem, purpose: "serverAuth" });
    expect([v3.openssl.ok, v3.go.ok, v3.gnutls.ok], JSON.stringify(v3)).toEqual([false, false, false]);
    expect(v3.openssl.detail).toMatch(/path length constraint exceeded/);
    expect(v3.go.detail).toMatch(/too many intermediates for path length constraint/);

    const otherDomain = signWithSoftwareCa(subCa, { san: "URI:spiffe://example.org/ns/shop/sa/web" });
    const v4 = await verifyWithAll({ roots: [t.rootPem], intermediates: chain, leaf: otherDomain.certPem, purpose: "serverAuth" });
    expect([v4.openssl.ok, v4.go.ok], JSON.stringify(v4)).toEqual([false, false]);
    expect(v4.openssl.detail).toMatch(/permitted subtree violation/);
    expect(v4.go.detail).toMatch(/URI "spiffe:\/\/example\.org\/ns\/shop\/sa\/web" is not permitted/);
    // GnuTLS (3.7) checks DNS, email, IP and directory-name constraints but not URI ones: a SPIFFE
    // verifier holds an SVID's trust domain to its bundle itself (docs/mesh-intermediates.md).
    // The same SVID with a DNS name outside the constraints is refused by GnuTLS too.
    const otherDomainDns = signWithSoftwareCa(subCa, { san: "URI:spiffe://example.org/ns/shop/sa/web,DNS:web.shop.svc.example.org" });
    const v5 = await verifyWithAll({ roots: [t.rootPem], intermediates: chain, leaf: otherDomainDns.certPem, purpose: "serverAuth" });
    expect([v5.openssl.ok, v5.go.ok, v5.gnutls.ok], JSON.stringify(v5)).toEqual([false, false, false]);
  });

  it("revoking the sub-CA shows at once in its issuer's OCSP and CRL, and openssl then refuses it", async () => {
    const res = await t.api("POST", `/api/v1/certificates/${subCa.serial}/revoke`, { token: tok.requester, json: { reason: "keyCompromise" } });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ status: "revoked", alreadyRevoked: false });
    await within(5_000, async () => /cert\.pem: revoked/.test((await rp.ocsp(ocspUrlOf(subCa.certPem), subCa.chain, t.rootPem, { certPem: subCa.certPem })).out));
    let crlText = "";
    await within(5_000, async () => {
      crlText = await rp.crlText((await fetchBytes(crlUrlOf(subCa.certPem))).body);
      return crlText.includes(subCa.serial.toUpperCase());
    });
    // The intermediate's CRL covers the CAs it signs too: no "only user certificates" scope.
    expect(crlText).not.toMatch(/Only User Certificates/);
    const crl = await rp.crlPem((await fetchBytes(crlUrlOf(subCa.certPem))).body, "intermediate-crl.pem");
    const checked = await rp.verify(t.rootPem, subCa.chain, subCa.certPem, [crl]);
    expect(checked.ok).toBe(false);
    expect(checked.out).toMatch(/certificate revoked/);
    // keyCompromise bars the key: the same mesh key is never certified again.
    const again = await submit({ csr: makeCsr({ keyPem: subCa.keyPem, subject: MESH_SUBJECT }).csr });
    expect(again.status).toBe(400);
    expect(again.body.type).toBe(`${PROBLEM_TYPE_PREFIX}key-compromised`);
  });
});

describe("mesh-intermediate refusals, checked before anything waits for approval", () => {
  it("a validity over the profile's 30 days, a key type it does not allow, a workload's SPIFFE ID, names outside its SAN rules", async () => {
    const before = (await t.api("GET", "/api/v1/requests?status=pending", { token: tok.auditor })).body.items?.length;
    const long = await submit({ csr: meshCsr().csr, validity: "60d" });
    expect(long.status).toBe(400);
    expect(long.body).toMatchObject({ type: `${PROBLEM_TYPE_PREFIX}bad-validity`, detail: "validity 60d is longer than profile mesh-intermediate allows (30d)" });

    const rsa2048 = await submit({ csr: meshCsr({ key: "rsa-2048" }).csr });
    expect(rsa2048.status).toBe(400);
    expect(rsa2048.body.type).toBe(`${PROBLEM_TYPE_PREFIX}bad-public-key`);
    expect(rsa2048.body.detail).toMatch(/does not accept RSA 2048 keys; it accepts ECDSA P-256, ECDSA P-384, RSA 3072, RSA 4096/);

    const workload = await submit({ csr: meshCsr({ san: "URI:spiffe://cluster.local/ns/shop/sa/web" }).csr });
    expect(workload.status).toBe(400);
    expect(workload.body).toMatchObject({ type: `${PROBLEM_TYPE_PREFIX}rejected-identifier` });
    expect(workload.body.detail).toMatch(/not a trust domain's SPIFFE ID/);

    const foreign = await submit({ csr: meshCsr({ san: "URI:spiffe://example.org" }).csr });
    expect(foreign.body).toMatchObject({ status: 400, detail: 'trust domain "example.org" is not served by this profile' });
    const dns = await submit({ csr: meshCsr({ san: "DNS:issuer.example.com" }).csr });
    expect(dns.body.type).toBe(`${PROBLEM_TYPE_PREFIX}rejected-identifier`);

    const noCn = await submit({ csr: makeCsr({ subject: "/O=Example", san: "URI:spiffe://cluster.local" }).csr });
    expect(noCn.body).toMatchObject({ type: `${PROBLEM_TYPE_PREFIX}bad-subject` });

    const after = (await t.api("GET", "/api/v1/requests?status=pending", { token: tok.auditor })).body.items?.length;
    expect(after).toBe(before);
  });

  it("isCA says which kind the client wants: a CA profile for isCA false, or an end-entity one for isCA true, is refused (wrong-profile-kind)", async () => {
    const asLeaf = await submit({ csr: meshCsr().csr, isCA: false }, tok.mesh);
    expect(asLeaf.status).toBe(400);
    expect(asLeaf.body).toMatchObject({
      type: `${PROBLEM_TYPE_PREFIX}wrong-profile-kind`,
      detail: "profile mesh-intermediate issues CA certificates, and this request is for an end-entity certificate",
    });
    const csr = makeCsr({ subject: "/CN=web.shop.svc.cluster.local", san: "DNS:web.shop.svc.cluster.local" }).csr;
    const asCa = await t.api("POST", "/api/v1/certificates", { token: tok.tls, json: { csr, profile: "tls-server", isCA: true } });
    expect(asCa.status).toBe(400);
    expect(asCa.body.type).toBe(`${PROBLEM_TYPE_PREFIX}wrong-profile-kind`);
    // A token scoped to another profile may not ask for sub-CAs at all.
    expect((await submit({ csr: meshCsr().csr }, tok.tls)).status).toBe(403);
  });

  it("ACME can never issue from a CA profile: an ACME directory naming one is refused when profiles load, even with approvals 0", () => {
    const dir = tempDir("ca-acme-");
    try {
      const mesh = fs.readFileSync(path.join(REPO, "profiles/mesh-intermediate.yaml"), "utf8");
      const auto = mesh.replace("name: mesh-intermediate", "name: mesh-auto").replace("approvals: { required: 2 }", "approvals: { required: 0 }");
      expect(auto).toContain("required: 0");
      fs.writeFileSync(path.join(dir, "mesh-auto.yaml"), auto);
      fs.mkdirSync(path.join(dir, "acme"));
      fs.writeFileSync(path.join(dir, "acme", "mesh.yaml"), "name: mesh\ncertificateProfile: mesh-auto\nidentifiers:\n  dns:\n    suffixes: [cluster.local]\n");
      const profiles = loadProfiles(dir);
      expect(profiles.get("mesh-auto")!.approvals.required).toBe(0);
      expect(() => loadAcmeProfiles(path.join(dir, "acme"), profiles)).toThrow(ProfileError);
      expect(() => loadAcmeProfiles(path.join(dir, "acme"), profiles)).toThrow('mesh.yaml: certificateProfile: profile "mesh-auto" issues CA certificates, which ACME never does');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("mesh-intermediate from the CLI", () => {
  it("hsm-ca issue --profile mesh-intermediate waits (exit 3), and --request ID writes the sub-CA with its chain once two admins approve", async () => {
    const { csr } = meshCsr({ key: "rsa-3072" });
    const csrFile = path.join(work, "mesh.csr");
    fs.writeFileSync(csrFile, csr);
    const env = { ...t.env, HSM_CA_TOKEN: tok.mesh };
    const asked = await runCliInProcess(["issue", "--profile", "mesh-intermediate", "--csr", csrFile, "--validity", "30d"], env, work);
    expect(asked.code, asked.stderr).toBe(3);
    const id = /^request (\S+) pending: 0 of 2 approvals/.exec(asked.stdout)![1]!;
    for (const admin of [tok.b, tok.c]) expect((await approve(id, admin)).status).toBe(200);
    const out = path.join(work, "mesh.pem");
    const fetched = await runCliInProcess(["issue", "--request", id, "--out", out, "--wait", "10"], env, work);
    expect(fetched.code, fetched.stderr).toBe(0);
    const [subCa, intermediate] = fs.readFileSync(out, "utf8").match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g)!;
    expect(x509Text(subCa!)).toMatch(/CA:TRUE, pathlen:0/);
    const v = await verifyWithAll({ roots: [t.rootPem], intermediates: [intermediate!], leaf: subCa! });
    expect([v.openssl.ok, v.go.ok, v.gnutls.ok], JSON.stringify(v)).toEqual([true, true, true]);
  });
});

describe("the issuing intermediate's path length", () => {
  const activeCn = async () => new x509.X509Certificate(await (await fetch(`${t.service.httpUrl}/ca/chain.pem`)).text()).subjectName.getField("CN")[0];

  it("an intermediate of pathLen 0 refuses CA profiles (409 issuer-path-length, saying what to do); a rotation with HSM_CA_INTERMEDIATE_PATH_LENGTH=1 makes it possible", async () => {
    const rotate = async (pathLength: string) => {
      const r = await runCliInProcess(["rotate"], { ...t.env, HSM_CA_INTERMEDIATE_PATH_LENGTH: pathLength });
      expect(r.code, r.stderr).toBe(0);
      const subject = /INTERMEDIATE CA\s+CN=([^,\n]+)/.exec(r.stdout)![1]!;
      // The service notices the new intermediate by itself (hierarchy-watch, every 2 s).
      await waitFor(`the service issues from ${subject}`, async () => (await activeCn()) === subject && t.service.ctx.issuer().certificate.subjectName.getField("CN")[0] === subject, { timeoutMs: 15_000 });
      return subject;
    };
    const pathLenOfActive = () => new x509.X509Certificate(t.service.ctx.issuer().row.certificatePem).getExtension(x509.BasicConstraintsExtension)!.pathLength;
    expect(pathLenOfActive()).toBe(1);

    // An existing hierarchy whose intermediate has pathLen 0 (made with the setting at 0, or before it existed).
    await rotate("0");
    expect(pathLenOfActive()).toBe(0);
    const refused = await submit({ csr: meshCsr().csr });
    expect(refused.status).toBe(409);
    expect(refused.body.type).toBe(`${PROBLEM_TYPE_PREFIX}issuer-path-length`);
    expect(refused.body.detail).toBe(
      "the active intermediate has pathLen 0, so it signs end-entity certificates only; profile mesh-intermediate issues CAs of pathLen 0, which needs an intermediate of pathLen 1: " +
        "set HSM_CA_INTERMEDIATE_PATH_LENGTH=1 (or more) and rotate the intermediate (hsm-ca rotate); the next intermediate will allow it",
    );
    // End-entity profiles go on as before.
    const leaf = await t.api("POST", "/api/v1/certificates", { token: tok.tls, json: { csr: makeCsr({ subject: "/CN=a.example.test", san: "DNS:a.example.test" }).csr, profile: "tls-server" } });
    expect(leaf.status).toBe(201);

    await rotate("1");
    expect(pathLenOfActive()).toBe(1);
    const { csr, keyPem } = meshCsr();
    const accepted = await submit({ csr });
    expect(accepted.status, accepted.text).toBe(202);
    const issued = await approveTwice(accepted.body.id);
    expect(new x509.X509Certificate(issued.certificate).issuerName.getField("CN")[0]).toBe(await activeCn());
    const svid = signWithSoftwareCa({ certPem: issued.certificate, keyPem }, { san: "URI:spiffe://cluster.local/ns/shop/sa/after-rotation" });
    const v = await verifyWithAll({ roots: [t.rootPem], intermediates: [issued.chain, issued.certificate], leaf: svid.certPem, purpose: "clientAuth" });
    expect([v.openssl.ok, v.go.ok, v.gnutls.ok], JSON.stringify(v)).toEqual([true, true, true]);
  });

  it("a root of pathLen 1 leaves no room: the refusal says a rotation cannot help; a profile asking for more than the intermediate allows is refused too", () => {
    const profile = loadProfiles(path.join(REPO, "profiles")).get("mesh-intermediate")!;
    expect(isCaProfile(profile)).toBe(true);
    const mesh = profile as CaProfile;
    expect(() => checkIssuerPathLength(mesh, { intermediate: 0, root: 1 })).toThrow(
      "the active intermediate has pathLen 0, so it signs end-entity certificates only; profile mesh-intermediate issues CAs of pathLen 0, which needs an intermediate of pathLen 1, " +
        "and the root's pathLen 1 allows intermediates of pathLen 0 at most: a rotation cannot help, a new root made with HSM_CA_INTERMEDIATE_PATH_LENGTH=1 is needed (see docs/mesh-intermediates.md)",
    );
    const deeper: CaProfile = { ...mesh, name: "two-levels", ca: { ...mesh.ca, pathLength: 1 } };
    expect(() => checkIssuerPathLength(deeper, { intermediate: 1, root: 3 })).toThrow(
      /may sign CAs of pathLen 0 at most; profile two-levels issues CAs of pathLen 1, which needs an intermediate of pathLen 2: set HSM_CA_INTERMEDIATE_PATH_LENGTH=2 \(or more\) and rotate/,
    );
    // The default hierarchy's root (pathLen 2) has room for intermediates of pathLen 1 only.
    expect(() => checkIssuerPathLength(deeper, { intermediate: 1, root: 2 })).toThrow(/the root's pathLen 2 allows intermediates of pathLen 1 at most: a rotation cannot help/);
    expect(() => checkIssuerPathLength(deeper, { intermediate: 2, root: 3 })).not.toThrow();
    expect(() => checkIssuerPathLength(mesh, { intermediate: null, root: null })).not.toThrow();
  });
});

describe("the lifetime of a CA certificate", () => {
  it("ends no later than the intermediate that signs it, whatever the validity asked for", async () => {
    const mesh = loadProfiles(path.join(REPO, "profiles")).get("mesh-intermediate")!;
    const now = new Date("2030-01-01T00:00:00Z");
    const issuerNotAfter = new Date("2030-01-04T00:00:00Z");
    const csr = await parseCsr(meshCsr().csr);
    const d = decide({ profile: mesh, csr, validity: "30d", issuerNotAfter, issuerPathLengths: { intermediate: 1, root: 2 }, now });
    expect(d.notAfter).toEqual(issuerNotAfter);
    expect(d.ca).toMatchObject({ pathLength: 0 });
    expect(d.keyUsage).toEqual(["keyCertSign", "cRLSign"]);
    expect(d.extendedKeyUsage).toEqual([]);
    // Without the issuer's path lengths a CA profile is never decided.
    expect(() => decide({ profile: mesh, csr, issuerNotAfter, now })).toThrow(/needs the issuer's path lengths/);
  });
});

describe("name constraint encoding", () => {
  it("writes address ranges as address and mask, host bits cleared", () => {
    const hex = (r: string) => Buffer.from(addressAndMask(r)).toString("hex");
    expect(hex("10.0.0.0/8")).toBe("0a000000ff000000");
    expect(hex("192.168.1.77/20")).toBe("c0a80000fffff000");
    expect(hex("0.0.0.0/0")).toBe("0000000000000000");
    expect(hex("fd00::/8")).toBe("fd" + "00".repeat(15) + "ff" + "00".repeat(15));
    expect(hex("::/0")).toBe("00".repeat(32));
    expect(() => addressAndMask("10.0.0.0/33")).toThrow(/not an address range/);
  });
});
