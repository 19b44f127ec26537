import fs from "node:fs";
import path from "node:path";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hsmCaValidity, parseGoDuration } from "../src/cert-manager/duration.ts";
import { hsmCaClient } from "../src/cert-manager/hsm-ca-client.ts";
import { reconcileIssuer, type IssuerReconcileDeps } from "../src/cert-manager/reconcile-issuer.ts";
import { reconcileRequest, type RequestReconcileDeps, type SigningMemory } from "../src/cert-manager/reconcile-request.ts";
import type { CertificateRequest, HsmIssuer, IssuerKey } from "../src/cert-manager/resources.ts";
import {
  approvedByCertManager,
  certificateRequest,
  deniedByPolicy,
  hsmIssuer,
  issuerReady,
  pemBlocks,
  readyCondition,
} from "./helpers/cert-manager.ts";
import { makeKey, openssl, tempDir, verify, x509Text, type KeySpec } from "./helpers/openssl.ts";
import { freePort } from "./helpers/ports.ts";
import { verifyWithAll } from "./helpers/relying-parties.ts";
import { signWithSoftwareCa } from "./helpers/software-ca.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

/**
 * The external issuer's decisions (src/cert-manager/reconcile-*.ts) on
 * CertificateRequests shaped as cert-manager makes them, with a real hsm-ca
 * (SoftHSM2 token, PostgreSQL) as the signer and openssl as the relying
 * party. The Kubernetes side is plain objects here: no API server runs on
 * this machine (test/cert-manager-controller.test.ts drives the watch loop
 * against a fake one).
 */

let t: TestService;
let issuerToken: string;
let auditorToken: string;
let adminTokens: string[];
const secrets = new Map<string, string>();
let issuers: Map<string, HsmIssuer>;
let memory: Map<string, SigningMemory>;

/** A CSR as cert-manager writes it for a Certificate: key usages requested as an extension too. */
function certManagerCsr(opts: { key?: KeySpec; subject?: string; san?: string }): string {
  const dir = tempDir("cm-csr-");
  fs.writeFileSync(path.join(dir, "key.pem"), makeKey(opts.key ?? "ec-p256"));
  const args = ["req", "-new", "-key", path.join(dir, "key.pem"), "-subj", opts.subject ?? "/"];
  if (opts.san) args.push("-addext", `subjectAltName=${opts.san}`);
  args.push("-addext", "keyUsage=critical,digitalSignature,keyEncipherment");
  const csr = openssl(args);
  fs.rmSync(dir, { recursive: true, force: true });
  return csr;
}

const keyText = (k: IssuerKey) => `${k.kind}/${k.namespace ?? ""}/${k.name}`;

function deps(overrides: Partial<RequestReconcileDeps> = {}): RequestReconcileDeps {
  return {
    clusterResourceNamespace: "hsm-ca-system",
    getIssuer: async (k) => issuers.get(keyText(k)),
    readSecret: async (ns, name, key) => secrets.get(`${ns}/${name}/${key}`),
    connect: hsmCaClient,
    memory,
    now: () => new Date(),
    ...overrides,
  };
}

const issuerDeps = (): IssuerReconcileDeps => ({
  clusterResourceNamespace: "hsm-ca-system",
  readSecret: async (ns, name, key) => secrets.get(`${ns}/${name}/${key}`),
  connect: hsmCaClient,
  now: () => new Date(),
});

function putIssuer(issuer: HsmIssuer): void {
  issuers.set(keyText({ kind: issuer.kind, name: issuer.metadata.name, namespace: issuer.metadata.namespace }), issuer);
}

async function issuedCount(): Promise<number> {
  const res = await t.api("GET", "/api/v1/certificates?limit=500", { token: auditorToken });
  expect(res.status).toBe(200);
  return (res.body.items as any[]).filter((c) => c.profile !== "hsm-ca-server").length;
}

/** The request as the API server holds it after the controller's status patch. */
const applied = (request: CertificateRequest, status: CertificateRequest["status"]): CertificateRequest => ({ ...request, status });

beforeAll(async () => {
  t = await startTestService("postgres");
  issuerToken = await t.token("issuer", "tls-server", "spiffe-svid", "code-signing", "mesh-intermediate");
  auditorToken = await t.token("auditor");
  adminTokens = [await t.token("admin"), await t.token("admin")];
  secrets.set("apps/hsm-ca-token/token", `${issuerToken}\n`);
  secrets.set("hsm-ca-system/hsm-ca-token/token", issuerToken);
  secrets.set("apps/auditor-token/token", auditorToken);
  secrets.set("apps/wrong-token/token", "hsmca_not-a-real-token");
  secrets.set("apps/tls-only-token/token", await t.token("issuer", "tls-server"));
  secrets.set("linkerd/hsm-ca-token/token", issuerToken);
});
afterAll(async () => {
  await t?.stop();
});

describe("Go durations to hsm-ca validities", () => {
  it("converts what cert-manager writes", () => {
    expect(hsmCaValidity(parseGoDuration("2160h0m0s")!)).toBe("90d");
    expect(hsmCaValidity(parseGoDuration("1h0m0s")!)).toBe("1h");
    expect(hsmCaValidity(parseGoDuration("1h30m")!)).toBe("90m");
    expect(hsmCaValidity(parseGoDuration("45s")!)).toBe("45s");
    expect(hsmCaValidity(parseGoDuration("1.5h")!)).toBe("90m");
    expect(hsmCaValidity(parseGoDuration("500ms")!)).toBe("1s");
    expect(parseGoDuration("90d")).toBeUndefined();
    expect(parseGoDuration("0s")).toBeUndefined();
    expect(parseGoDuration("")).toBeUndefined();
  });
});

describe("issuer readiness", () => {
  it("is Ready when hsm-ca answers over TLS chaining to caBundle and accepts the token for the profile", async () => {
    const issuer = hsmIssuer({ url: t.service.httpsUrl, rootPem: t.rootPem, generation: 3 });
    const outcome = await reconcileIssuer(issuer, issuerDeps());
    expect(outcome.ready).toBe(true);
    expect(readyCondition(outcome.status)).toMatchObject({ status: "True", reason: "Verified", observedGeneration: 3 });
  });

  it("is not Ready, and says why, for a wrong token, a token outside the profile, a missing Secret, a foreign caBundle or a plain-HTTP URL", async () => {
    const check = async (f: Partial<Parameters<typeof hsmIssuer>[0]>) =>
      reconcileIssuer(hsmIssuer({ url: t.service.httpsUrl, rootPem: t.rootPem, ...f }), issuerDeps());

    const wrong = await check({ secretName: "wrong-token" });
    expect(readyCondition(wrong.status)).toMatchObject({ status: "False", reason: "TokenRefused" });
    expect(readyCondition(wrong.status)!.message).toMatch(/does not accept the API token \(Secret apps\/wrong-token\)/);
    expect(readyCondition(wrong.status)!.message).not.toContain("hsmca_not-a-real-token");
    expect(wrong.retry).toBe(true);

    const auditor = await check({ secretName: "auditor-token", profile: "tls-client" });
    // An auditor may read every profile but issue from none: hsm-ca refuses it only at issuance.
    expect(auditor.ready).toBe(true);

    const outside = await check({ profile: "tls-client" });
    expect(readyCondition(outside.status)).toMatchObject({ status: "False", reason: "TokenRefused" });
    expect(readyCondition(outside.status)!.message).toMatch(/may not issue from profile tls-client/);

    const missing = await check({ secretName: "nope" });
    expect(readyCondition(missing.status)).toMatchObject({ status: "False", reason: "SecretNotFound" });

    const dir = tempDir("foreign-ca-");
    openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", path.join(dir, "k.pem"), "-subj", "/CN=Foreign Root", "-days", "1", "-out", path.join(dir, "c.pem")]);
    const foreign = await check({ rootPem: fs.readFileSync(path.join(dir, "c.pem"), "utf8") });
    fs.rmSync(dir, { recursive: true, force: true });
    expect(readyCondition(foreign.status)).toMatchObject({ status: "False", reason: "Unreachable" });
    expect(readyCondition(foreign.status)!.message).toMatch(/certificate/i);

    const http = await check({ url: t.service.httpUrl });
    expect(readyCondition(http.status)).toMatchObject({ status: "False", reason: "InvalidSpec" });
    expect(http.retry).toBe(false);
  });
});

describe("CertificateRequests", () => {
  beforeAll(async () => {
    issuers = new Map();
    memory = new Map();
    const issuer = hsmIssuer({ url: t.service.httpsUrl, rootPem: t.rootPem });
    const checked = await reconcileIssuer(issuer, issuerDeps());
    putIssuer({ ...issuer, status: checked.status });
    const cluster = hsmIssuer({ url: t.service.httpsUrl, rootPem: t.rootPem, kind: "HsmClusterIssuer", name: "hsm-ca-svid", profile: "spiffe-svid" });
    putIssuer({ ...cluster, status: (await reconcileIssuer(cluster, issuerDeps())).status });
  });

  it("approved: signs through hsm-ca; Ready True Issued with the leaf and intermediate in status.certificate and the root in status.ca, which openssl verifies", async () => {
    const before = await issuedCount();
    const request = certificateRequest({
      csrPem: certManagerCsr({ key: "rsa-2048", subject: "/CN=web.apps.svc.cluster.local", san: "DNS:web.apps.svc.cluster.local,DNS:web.apps.svc" }),
      conditions: [approvedByCertManager()],
    });
    const outcome = await reconcileRequest(request, deps());
    expect(outcome.action).toBe("update");
    if (outcome.action !== "update") return;
    expect(outcome.final).toBe(true);
    expect(readyCondition(outcome.status)).toMatchObject({ type: "Ready", status: "True", reason: "Issued" });
    expect(outcome.status.failureTime).toBeUndefined();
    // The Approved condition goes back untouched: cert-manager's webhook refuses any change to it.
    expect(outcome.status.conditions![0]).toEqual(request.status!.conditions![0]);

    const [leaf, intermediate, ...rest] = pemBlocks(outcome.status.certificate);
    expect(rest).toEqual([]);
    expect(intermediate).toBe(t.chainPem);
    const [root] = pemBlocks(outcome.status.ca);
    expect(root).toBe(t.rootPem);
    const v = verify(root!, intermediate!, leaf!, ["-x509_strict", "-purpose", "sslserver"]);
    expect(v.output).toContain("OK");
    expect(v.ok).toBe(true);
    expect(x509Text(leaf!)).toMatch(/DNS:web\.apps\.svc\.cluster\.local, DNS:web\.apps\.svc/);
    // spec.duration 2160h0m0s became validity 90d.
    const cert = new x509.X509Certificate(leaf!);
    const days = (cert.notAfter.getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(89.9);
    expect(days).toBeLessThanOrEqual(90);
    expect(outcome.event).toMatchObject({ type: "Normal", reason: "Issued" });

    // In hsm-ca's records, once.
    expect(await issuedCount()).toBe(before + 1);
    const stored = await t.api("GET", `/api/v1/certificates/${cert.serialNumber.toLowerCase()}`, { token: auditorToken });
    expect(stored.status).toBe(200);
    expect(stored.body.certificate).toBe(leaf);

    // Already issued: nothing more happens, however often it is seen again.
    const again = await reconcileRequest(applied(request, outcome.status), deps());
    expect(again).toMatchObject({ action: "ignore" });
    expect(await issuedCount()).toBe(before + 1);
  });

  it("a status write that did not land is retried with the certificate already signed, never a second one", async () => {
    const before = await issuedCount();
    const request = certificateRequest({ csrPem: certManagerCsr({ san: "DNS:api.apps.svc" }), conditions: [approvedByCertManager()] });
    const first = await reconcileRequest(request, deps());
    // The patch was lost: the controller sees the request as it was.
    const second = await reconcileRequest(request, deps());
    expect(first.action === "update" && second.action === "update").toBe(true);
    if (first.action !== "update" || second.action !== "update") return;
    expect(second.status.certificate).toBe(first.status.certificate);
    expect(await issuedCount()).toBe(before + 1);
  });

  it("honours spec.duration", async () => {
    const request = certificateRequest({ csrPem: certManagerCsr({ san: "DNS:short.apps.svc" }), duration: "1h0m0s", conditions: [approvedByCertManager()] });
    const outcome = await reconcileRequest(request, deps());
    if (outcome.action !== "update") throw new Error("not updated");
    const cert = new x509.X509Certificate(pemBlocks(outcome.status.certificate)[0]!);
    expect(cert.notAfter.getTime() - Date.now()).toBeLessThanOrEqual(3_600_000);
    expect(cert.notAfter.getTime() - Date.now()).toBeGreaterThan(3_500_000);
  });

  it("denied: Ready False Denied with failureTime, and nothing is signed", async () => {
    const before = await issuedCount();
    const request = certificateRequest({ csrPem: certManagerCsr({ san: "DNS:*.apps.example.test" }), conditions: [deniedByPolicy()] });
    const outcome = await reconcileRequest(request, deps());
    expect(outcome).toMatchObject({ action: "update", final: true });
    if (outcome.action !== "update") return;
    expect(readyCondition(outcome.status)).toMatchObject({ status: "False", reason: "Denied" });
    expect(readyCondition(outcome.status)!.message).toMatch(/denied by an approver \(policy\.cert-manager\.io\)/);
    expect(outcome.status.failureTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(outcome.status.certificate).toBeUndefined();
    expect(outcome.status.conditions!.find((c) => c.type === "Denied")).toEqual(request.status!.conditions![0]);
    expect(await issuedCount()).toBe(before);
    expect(await reconcileRequest(applied(request, outcome.status), deps())).toMatchObject({ action: "ignore" });
  });

  it("not yet approved: left alone, nothing signed", async () => {
    const before = await issuedCount();
    for (const conditions of [undefined, [{ type: "Ready", status: "False", reason: "Pending", message: "Waiting on certificate issuance from order" } as const]]) {
      const request = certificateRequest({ csrPem: certManagerCsr({ san: "DNS:wait.apps.svc" }), ...(conditions ? { conditions: [...conditions] } : {}) });
      expect(await reconcileRequest(request, deps())).toEqual({ action: "ignore", why: "it is not approved yet" });
    }
    expect(await issuedCount()).toBe(before);
  });

  it("requests for other issuers are ignored", async () => {
    const before = await issuedCount();
    for (const issuer of [
      { name: "letsencrypt", kind: "ClusterIssuer", group: "cert-manager.io" },
      { name: "hsm-ca", kind: "Issuer", group: "cert-manager.io" },
      { name: "hsm-ca", kind: "Issuer", group: "hsm-ca.io" },
      { name: "vault", kind: "VaultIssuer", group: "example.com" },
    ]) {
      const request = certificateRequest({ csrPem: certManagerCsr({ san: "DNS:other.apps.svc" }), issuer, conditions: [approvedByCertManager()] });
      expect(await reconcileRequest(request, deps())).toMatchObject({ action: "ignore", why: "its issuerRef names no hsm-ca.io issuer" });
    }
    expect(await issuedCount()).toBe(before);
  });

  it("a CSR the profile refuses: Ready False Failed with hsm-ca's problem detail and failureTime; final", async () => {
    const before = await issuedCount();
    const request = certificateRequest({ csrPem: certManagerCsr({ san: "DNS:www.example.invalid" }), conditions: [approvedByCertManager()] });
    const outcome = await reconcileRequest(request, deps());
    expect(outcome).toMatchObject({ action: "update", final: true });
    if (outcome.action !== "update") return;
    const ready = readyCondition(outcome.status)!;
    expect(ready).toMatchObject({ status: "False", reason: "Failed" });
    expect(ready.message).toContain("rejected-identifier");
    expect(ready.message).toContain('DNS name "www.example.invalid" is outside the names profile tls-server serves');
    expect(outcome.status.failureTime).toBeDefined();
    expect(outcome.event).toMatchObject({ type: "Warning", reason: "Failed" });
    expect(await issuedCount()).toBe(before);
    expect(await reconcileRequest(applied(request, outcome.status), deps())).toMatchObject({ action: "ignore" });
  });

  it("a validity longer than the profile allows, or isCA: true from an issuer with no spec.caProfile, fails without signing", async () => {
    const before = await issuedCount();
    const tooLong = await reconcileRequest(
      certificateRequest({ csrPem: certManagerCsr({ san: "DNS:long.apps.svc" }), duration: "8760h0m0s", conditions: [approvedByCertManager()] }),
      deps(),
    );
    expect(tooLong.action === "update" && readyCondition(tooLong.status)).toMatchObject({ reason: "Failed" });
    expect(tooLong.action === "update" && readyCondition(tooLong.status)!.message).toMatch(/bad-validity.*365d is longer than profile tls-server allows \(90d\)/);
    const ca = await reconcileRequest(certificateRequest({ csrPem: certManagerCsr({ san: "DNS:ca.apps.svc" }), isCA: true, conditions: [approvedByCertManager()] }), deps());
    expect(ca.action === "update" && readyCondition(ca.status)).toMatchObject({
      reason: "Failed",
      message: "isCA: true needs a CA profile: HsmIssuer apps/hsm-ca has no spec.caProfile (such as mesh-intermediate); nothing was signed",
    });
    expect(await issuedCount()).toBe(before);
  });

  it("hsm-ca unreachable: Ready False Pending, no failureTime, to be retried", async () => {
    const port = await freePort();
    const down = hsmIssuer({ url: `https://127.0.0.1:${port}`, rootPem: t.rootPem, name: "hsm-ca-down", conditions: [issuerReady()] });
    putIssuer(down);
    const request = certificateRequest({
      csrPem: certManagerCsr({ san: "DNS:retry.apps.svc" }),
      issuer: { name: "hsm-ca-down", kind: "HsmIssuer", group: "hsm-ca.io" },
      conditions: [approvedByCertManager()],
    });
    const outcome = await reconcileRequest(request, deps());
    expect(outcome).toMatchObject({ action: "update", final: false });
    if (outcome.action !== "update") return;
    expect(readyCondition(outcome.status)).toMatchObject({ status: "False", reason: "Pending" });
    expect(readyCondition(outcome.status)!.message).toMatch(/hsm-ca is unavailable, will retry: .*ECONNREFUSED/);
    expect(outcome.status.failureTime).toBeUndefined();
    // Still pending on the next look: not final.
    expect(await reconcileRequest(applied(request, outcome.status), deps())).toMatchObject({ action: "update", final: false });
  });

  it("issuer missing, not Ready, or Ready for an older spec: Pending", async () => {
    const csrPem = certManagerCsr({ san: "DNS:pending.apps.svc" });
    const missing = await reconcileRequest(
      certificateRequest({ csrPem, issuer: { name: "absent", kind: "HsmIssuer", group: "hsm-ca.io" }, conditions: [approvedByCertManager()] }),
      deps(),
    );
    expect(missing.action === "update" && readyCondition(missing.status)).toMatchObject({ reason: "Pending", message: "Waiting for HsmIssuer apps/absent to exist" });

    putIssuer(hsmIssuer({ url: t.service.httpsUrl, rootPem: t.rootPem, name: "unchecked" }));
    putIssuer(hsmIssuer({ url: t.service.httpsUrl, rootPem: t.rootPem, name: "edited", generation: 2, conditions: [issuerReady(1)] }));
    for (const [name, why] of [["unchecked", "it has not been checked yet"], ["edited", "its latest spec has not been checked yet"]]) {
      const o = await reconcileRequest(certificateRequest({ csrPem, issuer: { name: name!, kind: "HsmIssuer", group: "hsm-ca.io" }, conditions: [approvedByCertManager()] }), deps());
      expect(o.action === "update" && readyCondition(o.status)).toMatchObject({ reason: "Pending", message: `Waiting for HsmIssuer apps/${name} to be Ready: ${why}` });
      expect(o.action === "update" && o.final).toBe(false);
    }
  });

  it("an HsmClusterIssuer reads its token from the cluster resource namespace; a profile annotation picks the profile", async () => {
    const before = await issuedCount();
    const svid = await reconcileRequest(
      certificateRequest({
        csrPem: certManagerCsr({ san: "URI:spiffe://cluster.local/ns/apps/sa/web" }),
        namespace: "apps",
        issuer: { name: "hsm-ca-svid", kind: "HsmClusterIssuer", group: "hsm-ca.io" },
        duration: "1h0m0s",
        conditions: [approvedByCertManager()],
      }),
      deps(),
    );
    expect(svid.action === "update" && readyCondition(svid.status)).toMatchObject({ status: "True", reason: "Issued" });
    if (svid.action !== "update") return;
    expect(x509Text(pemBlocks(svid.status.certificate)[0]!)).toMatch(/Subject Alternative Name: critical\s+URI:spiffe:\/\/cluster\.local\/ns\/apps\/sa\/web/);

    // The namespaced issuer (default profile tls-server) issues an SVID when the request's annotation names spiffe-svid.
    const client = await reconcileRequest(
      certificateRequest({
        csrPem: certManagerCsr({ san: "URI:spiffe://example.org/ns/apps/sa/batch" }),
        annotations: { "hsm-ca.io/profile": "spiffe-svid" },
        duration: "1h0m0s",
        conditions: [approvedByCertManager()],
      }),
      deps(),
    );
    expect(client.action === "update" && readyCondition(client.status)).toMatchObject({ status: "True", reason: "Issued" });
    expect(await issuedCount()).toBe(before + 2);
  });

  it("a profile with M-of-N approvals in hsm-ca: Pending until two hsm-ca admins approve, then Issued", async () => {
    const request = certificateRequest({
      csrPem: certManagerCsr({ key: "ec-p384", subject: "/CN=Release Signing/O=Example" }),
      annotations: { "hsm-ca.io/profile": "code-signing" },
      duration: "720h0m0s",
      conditions: [approvedByCertManager()],
    });
    const waiting = await reconcileRequest(request, deps());
    expect(waiting).toMatchObject({ action: "update", final: false, retryAfterMs: 30_000 });
    if (waiting.action !== "update") return;
    const message = readyCondition(waiting.status)!.message!;
    expect(message).toMatch(/^Waiting for hsm-ca approvals: request (\S+) needs 2 admins to approve$/);
    const id = /request (\S+)/.exec(message)![1]!;

    const stillWaiting = await reconcileRequest(applied(request, waiting.status), deps());
    expect(stillWaiting.action === "update" && readyCondition(stillWaiting.status)!.message).toBe(`Waiting for hsm-ca approvals: request ${id} is pending`);

    for (const admin of adminTokens) {
      const res = await t.api("POST", `/api/v1/requests/${id}/approve`, { token: admin, json: {} });
      expect(res.status, res.text).toBe(200);
    }
    const done = await reconcileRequest(applied(request, waiting.status), deps());
    expect(done.action === "update" && readyCondition(done.status)).toMatchObject({ status: "True", reason: "Issued" });
    if (done.action !== "update") return;
    const [leaf, chain] = pemBlocks(done.status.certificate);
    expect(verify(t.rootPem, chain!, leaf!).ok).toBe(true);
    expect(x509Text(leaf!)).toMatch(/Code Signing/);
  });
});

/**
 * A CSR as cert-manager writes it for a Certificate with isCA: true, such as
 * Linkerd's identity issuer (commonName and dnsNames
 * identity.linkerd.cluster.local, usages cert sign, crl sign, server auth,
 * client auth): basicConstraints and key usages requested as extensions.
 */
function certManagerCaCsr(): { csrPem: string; keyPem: string } {
  const dir = tempDir("cm-ca-csr-");
  const keyPem = makeKey("ec-p256");
  fs.writeFileSync(path.join(dir, "key.pem"), keyPem);
  const csrPem = openssl([
    "req", "-new", "-key", path.join(dir, "key.pem"), "-subj", "/CN=identity.linkerd.cluster.local",
    "-addext", "subjectAltName=DNS:identity.linkerd.cluster.local",
    "-addext", "basicConstraints=critical,CA:TRUE",
    "-addext", "keyUsage=critical,digitalSignature,keyCertSign,cRLSign",
    "-addext", "extendedKeyUsage=serverAuth,clientAuth",
  ]);
  fs.rmSync(dir, { recursive: true, force: true });
  return { csrPem, keyPem };
}

describe("CertificateRequests with isCA: true (a mesh's issuer)", () => {
  const meshIssuerRef = { name: "hsm-ca-mesh", kind: "HsmIssuer", group: "hsm-ca.io" };

  beforeAll(async () => {
    issuers = new Map();
    memory = new Map();
    const issuer = hsmIssuer({ url: t.service.httpsUrl, rootPem: t.rootPem, name: "hsm-ca-mesh", namespace: "linkerd", caProfile: "mesh-intermediate" });
    const checked = await reconcileIssuer(issuer, issuerDeps());
    expect(readyCondition(checked.status)).toMatchObject({ status: "True", message: expect.stringContaining("profile tls-server and mesh-intermediate") });
    putIssuer({ ...issuer, status: checked.status });
    const plain = hsmIssuer({ url: t.service.httpsUrl, rootPem: t.rootPem });
    putIssuer({ ...plain, status: (await reconcileIssuer(plain, issuerDeps())).status });
  });

  it("an issuer whose token does not cover its spec.caProfile is not Ready", async () => {
    const outcome = await reconcileIssuer(hsmIssuer({ url: t.service.httpsUrl, rootPem: t.rootPem, secretName: "tls-only-token", caProfile: "mesh-intermediate" }), issuerDeps());
    expect(readyCondition(outcome.status)).toMatchObject({ status: "False", reason: "TokenRefused" });
    expect(readyCondition(outcome.status)!.message).toMatch(/may not issue from profile mesh-intermediate/);
  });

  it("maps to the issuer's CA profile: Pending until two hsm-ca admins approve, then Issued; the sub-CA's key signs SVIDs that OpenSSL, Go and GnuTLS accept, and nothing outside its names", async () => {
    const before = await issuedCount();
    const { csrPem, keyPem } = certManagerCaCsr();
    const request = certificateRequest({
      csrPem,
      namespace: "linkerd",
      name: "linkerd-identity-issuer-a1b2c3",
      issuer: meshIssuerRef,
      isCA: true,
      duration: "48h0m0s",
      usages: ["cert sign", "crl sign", "server auth", "client auth"],
      conditions: [approvedByCertManager()],
    });
    const waiting = await reconcileRequest(request, deps());
    expect(waiting).toMatchObject({ action: "update", final: false, retryAfterMs: 30_000 });
    if (waiting.action !== "update") return;
    const id = /^Waiting for hsm-ca approvals: request (\S+) needs 2 admins to approve$/.exec(readyCondition(waiting.status)!.message!)![1]!;
    expect(await issuedCount()).toBe(before);

    for (const admin of adminTokens) {
      const res = await t.api("POST", `/api/v1/requests/${id}/approve`, { token: admin, json: {} });
      expect(res.status, res.text).toBe(200);
    }
    const done = await reconcileRequest(applied(request, waiting.status), deps());
    expect(done.action === "update" && readyCondition(done.status)).toMatchObject({ status: "True", reason: "Issued" });
    if (done.action !== "update") return;
    const [subCa, intermediate, ...rest] = pemBlocks(done.status.certificate);
    expect(rest).toEqual([]);
    expect(intermediate).toBe(t.chainPem);
    expect(pemBlocks(done.status.ca)).toEqual([t.rootPem]);
    const text = x509Text(subCa!);
    expect(text).toMatch(/CA:TRUE, pathlen:0/);
    expect(text).toMatch(/X509v3 Name Constraints: critical/);
    expect(text).toMatch(/Subject: CN ?= ?identity\.linkerd\.cluster\.local/);
    // The CSR asked for server and client auth too; a CA certificate carries no EKU (it would bind everything below it).
    expect(text).not.toMatch(/Extended Key Usage/);
    // spec.duration 48h became validity 48h.
    const cert = new x509.X509Certificate(subCa!);
    expect(cert.notAfter.getTime() - Date.now()).toBeLessThanOrEqual(48 * 3_600_000);
    expect(cert.notAfter.getTime() - Date.now()).toBeGreaterThan(47.9 * 3_600_000);
    expect(await issuedCount()).toBe(before + 1);

    // status.ca is the trust anchor bundle; status.certificate the issuer's chain.
    const ca = { certPem: subCa!, keyPem };
    const workload = signWithSoftwareCa(ca, { san: "URI:spiffe://cluster.local/ns/emojivoto/sa/web,DNS:web.emojivoto.serviceaccount.identity.linkerd.cluster.local" });
    const good = await verifyWithAll({ roots: pemBlocks(done.status.ca), intermediates: [intermediate!, subCa!], leaf: workload.certPem, purpose: "clientAuth" });
    expect([good.openssl.ok, good.go.ok, good.gnutls.ok], JSON.stringify(good)).toEqual([true, true, true]);
    const outside = signWithSoftwareCa(ca, { san: "DNS:login.bank.example" });
    const bad = await verifyWithAll({ roots: pemBlocks(done.status.ca), intermediates: [intermediate!, subCa!], leaf: outside.certPem, purpose: "serverAuth" });
    expect([bad.openssl.ok, bad.go.ok, bad.gnutls.ok], JSON.stringify(bad)).toEqual([false, false, false]);
  });

  it("isCA: false never gets a CA profile, and isCA: true never an end-entity one, whatever the annotation says: Failed, nothing signed or waiting", async () => {
    const before = await issuedCount();
    const pendingBefore = (await t.api("GET", "/api/v1/requests?status=pending", { token: adminTokens[0] })).body.items.length;
    const leafAsCa = await reconcileRequest(
      certificateRequest({
        csrPem: certManagerCsr({ subject: "/CN=Sneaky", san: "DNS:web.apps.svc.cluster.local" }),
        annotations: { "hsm-ca.io/profile": "mesh-intermediate" },
        duration: "24h0m0s",
        conditions: [approvedByCertManager()],
      }),
      deps(),
    );
    expect(leafAsCa).toMatchObject({ action: "update", final: true });
    expect(leafAsCa.action === "update" && readyCondition(leafAsCa.status)).toMatchObject({
      reason: "Failed",
      message:
        "hsm-ca refused the request (wrong-profile-kind, profile mesh-intermediate): profile mesh-intermediate issues CA certificates, and this request is for an end-entity certificate",
    });

    const caAsLeaf = await reconcileRequest(
      certificateRequest({
        csrPem: certManagerCaCsr().csrPem,
        namespace: "linkerd",
        issuer: meshIssuerRef,
        isCA: true,
        annotations: { "hsm-ca.io/profile": "tls-server" },
        duration: "24h0m0s",
        conditions: [approvedByCertManager()],
      }),
      deps(),
    );
    expect(caAsLeaf.action === "update" && readyCondition(caAsLeaf.status)).toMatchObject({ reason: "Failed" });
    expect(caAsLeaf.action === "update" && readyCondition(caAsLeaf.status)!.message).toMatch(/wrong-profile-kind, profile tls-server\): profile tls-server issues end-entity certificates/);

    expect(await issuedCount()).toBe(before);
    expect((await t.api("GET", "/api/v1/requests?status=pending", { token: adminTokens[0] })).body.items.length).toBe(pendingBefore);
  });
});
