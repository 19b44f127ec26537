import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import pino from "pino";
import YAML from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startController, type Controller } from "../src/cert-manager/controller.ts";
import { kubeApi } from "../src/cert-manager/kube-api.ts";
import type { CertificateRequest, HsmIssuer } from "../src/cert-manager/resources.ts";
import { approvedByCertManager, certificateRequest, deniedByPolicy, hsmIssuer, pemBlocks, readyCondition } from "./helpers/cert-manager.ts";
import { FakeKubeApi, type StoredObject } from "./helpers/fake-kube-api.ts";
import { REPO } from "./helpers/cli.ts";
import { makeCsr, tempDir, verify } from "./helpers/openssl.ts";
import { freePort } from "./helpers/ports.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

/**
 * The watch loop (src/cert-manager/controller.ts + kube-api.ts) with the real
 * @kubernetes/client-node informers and API clients, against a FAKE
 * Kubernetes API server (test/helpers/fake-kube-api.ts: no kube-apiserver
 * can run here) and a real hsm-ca as the signer.
 */

const CR = "cert-manager.io/v1/certificaterequests";
const ISSUERS = "hsm-ca.io/v1alpha1/hsmissuers";
const SECRETS = "v1/secrets";

let t: TestService;
let fake: FakeKubeApi;
let server: string;
let controller: Controller;
let token: string;
const webApproval = approvedByCertManager();
const logLines: string[] = [];

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const request = (name: string) => fake.get(CR, "apps", name) as unknown as CertificateRequest | undefined;
const issuer = (name: string) => fake.get(ISSUERS, "apps", name) as unknown as HsmIssuer | undefined;
const readyOf = (name: string) => readyCondition(request(name)?.status);
const patchesOf = (name: string) => fake.calls.filter((c) => c.method === "PATCH" && c.path.includes(`/certificaterequests/${name}/`));

function putRequest(r: CertificateRequest): void {
  fake.put(CR, r as unknown as StoredObject);
}

beforeAll(async () => {
  t = await startTestService("postgres");
  token = await t.token("issuer", "tls-server");
  fake = new FakeKubeApi();
  server = await fake.start();

  fake.put(SECRETS, {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "hsm-ca-token", namespace: "apps" },
    type: "Opaque",
    data: { token: Buffer.from(token).toString("base64") },
  });
  fake.put(ISSUERS, hsmIssuer({ url: t.service.httpsUrl, rootPem: t.rootPem }) as unknown as StoredObject);
  const csr = (name: string) => makeCsr({ subject: "/", san: `DNS:${name}.apps.svc` }).csr;
  putRequest(certificateRequest({ name: "web-1", csrPem: csr("web"), conditions: [webApproval] }));
  putRequest(certificateRequest({ name: "wild-1", csrPem: csr("wild"), conditions: [deniedByPolicy()] }));
  putRequest(certificateRequest({ name: "later-1", csrPem: csr("later") }));
  putRequest(certificateRequest({ name: "acme-1", csrPem: csr("acme"), issuer: { name: "letsencrypt", kind: "ClusterIssuer", group: "cert-manager.io" }, conditions: [approvedByCertManager()] }));

  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "fake", server, skipTLSVerify: true }],
    users: [{ name: "controller", token: fake.token }],
    contexts: [{ name: "fake", cluster: "fake", user: "controller" }],
    currentContext: "fake",
  });
  const log = pino({ level: "debug" }, { write: (line: string) => void logLines.push(line) });
  controller = startController({ kube: kubeApi(kc), clusterResourceNamespace: "hsm-ca-system", log, queue: { baseDelayMs: 200, maxDelayMs: 2_000 } });
  await controller.started;
});

afterAll(async () => {
  await controller?.stop();
  await fake?.stop();
  await t?.stop();
});

describe("the controller against a fake Kubernetes API", () => {
  it("checks the HsmIssuer and writes Ready True to its status", async () => {
    const ready = await waitFor("issuer Ready", () => readyCondition(issuer("hsm-ca")?.status));
    expect(ready).toMatchObject({ status: "True", reason: "Verified", observedGeneration: 1 });
  });

  it("issues an approved request found at startup: status.certificate and status.ca verify with openssl; an Issued event is recorded", async () => {
    const ready = await waitFor("web-1 Ready", () => (readyOf("web-1")?.status === "True" ? readyOf("web-1") : undefined));
    expect(ready.reason).toBe("Issued");
    const status = request("web-1")!.status!;
    const [leaf, chain] = pemBlocks(status.certificate);
    expect(verify(pemBlocks(status.ca)[0]!, chain!, leaf!, ["-purpose", "sslserver"]).ok).toBe(true);
    // Approved went back exactly as cert-manager wrote it (its webhook refuses any change).
    expect(status.conditions!.find((c) => c.type === "Approved")).toEqual(webApproval);
    const event = await waitFor("Issued event", () => fake.events.find((e) => (e as any).involvedObject?.name === "web-1"));
    expect(event).toMatchObject({ type: "Normal", reason: "Issued", involvedObject: { kind: "CertificateRequest", namespace: "apps" } });
  });

  it("marks a denied request Denied with failureTime and signs nothing", async () => {
    const ready = await waitFor("wild-1 Denied", () => readyOf("wild-1"));
    expect(ready).toMatchObject({ status: "False", reason: "Denied" });
    expect(request("wild-1")!.status!.failureTime).toBeDefined();
    expect(request("wild-1")!.status!.certificate).toBeUndefined();
    const list = await t.api("GET", "/api/v1/certificates?profile=tls-server", { token });
    expect((list.body.items as any[]).map((c) => c.sans)).not.toContainEqual(["dns:wild.apps.svc"]);
  });

  it("leaves unapproved requests and other issuers' requests untouched", async () => {
    await controller.idle();
    expect(request("later-1")!.status).toBeUndefined();
    expect(request("acme-1")!.status).toEqual({ conditions: [expect.objectContaining({ type: "Approved" })] });
    expect(patchesOf("later-1")).toEqual([]);
    expect(patchesOf("acme-1")).toEqual([]);
  });

  it("issues a waiting request once the watch brings its approval", async () => {
    const waiting = request("later-1")!;
    putRequest({ ...waiting, status: { conditions: [approvedByCertManager()] } });
    const ready = await waitFor("later-1 Ready", () => (readyOf("later-1")?.status === "True" ? readyOf("later-1") : undefined));
    expect(ready.reason).toBe("Issued");
  });

  it("holds a request Pending while its issuer is not Ready, and issues it once the issuer is fixed", async () => {
    const closed = await freePort();
    fake.put(ISSUERS, hsmIssuer({ url: `https://127.0.0.1:${closed}`, rootPem: t.rootPem, name: "hsm-ca-moved" }) as unknown as StoredObject);
    await waitFor("hsm-ca-moved not Ready", () => (readyCondition(issuer("hsm-ca-moved")?.status)?.status === "False" ? true : undefined));
    expect(readyCondition(issuer("hsm-ca-moved")?.status)).toMatchObject({ reason: "Unreachable" });

    putRequest(
      certificateRequest({
        name: "moved-1",
        csrPem: makeCsr({ subject: "/", san: "DNS:moved.apps.svc" }).csr,
        issuer: { name: "hsm-ca-moved", kind: "HsmIssuer", group: "hsm-ca.io" },
        conditions: [approvedByCertManager()],
      }),
    );
    const pending = await waitFor("moved-1 Pending", () => readyOf("moved-1"));
    expect(pending).toMatchObject({ status: "False", reason: "Pending" });
    expect(pending.message).toMatch(/^Waiting for HsmIssuer apps\/hsm-ca-moved to be Ready: hsm-ca at https:\/\/127\.0\.0\.1:\d+ is not ready/);
    expect(request("moved-1")!.status!.failureTime).toBeUndefined();

    // The admin corrects the URL: a new generation, checked, Ready, and the waiting request goes through.
    const current = issuer("hsm-ca-moved")!;
    fake.put(ISSUERS, { ...(current as unknown as StoredObject), spec: { ...current.spec, url: t.service.httpsUrl } });
    const ready = await waitFor("moved-1 Ready", () => (readyOf("moved-1")?.status === "True" ? readyOf("moved-1") : undefined));
    expect(ready.reason).toBe("Issued");
    expect(readyCondition(issuer("hsm-ca-moved")?.status)).toMatchObject({ status: "True", observedGeneration: 2 });
  });

  it("writes status with conditional merge patches, reads only the one Secret, and never logs the API token", async () => {
    const patches = fake.calls.filter((c) => c.method === "PATCH");
    expect(patches.length).toBeGreaterThan(0);
    for (const p of patches) {
      expect(p.contentType).toBe("application/merge-patch+json");
      expect(p.path).toMatch(/\/status$/);
      expect(p.body).toMatchObject({ metadata: { resourceVersion: expect.any(String) }, status: expect.any(Object) });
    }
    const secretCalls = fake.calls.filter((c) => c.path.includes("/secrets"));
    expect(secretCalls.every((c) => c.method === "GET" && c.path === "/api/v1/namespaces/apps/secrets/hsm-ca-token")).toBe(true);
    const writes = fake.calls.filter((c) => c.method !== "GET");
    expect(JSON.stringify(writes)).not.toContain(token);
    expect(logLines.length).toBeGreaterThan(0);
    expect(logLines.join("\n")).not.toContain(token);
  });
});

describe("deploy/cert-manager/rbac.yaml", () => {
  it("allows every call the controller made, and nothing it did not need", () => {
    const role = YAML.parseAllDocuments(fs.readFileSync(path.join(REPO, "deploy/cert-manager/rbac.yaml"), "utf8"))
      .map((d) => d.toJS())
      .find((d) => d.kind === "ClusterRole");
    const allowed = new Set<string>();
    for (const rule of role.rules) for (const g of rule.apiGroups) for (const r of rule.resources) for (const v of rule.verbs) allowed.add(`${v} ${g}/${r}`);
    const used = new Set<string>();
    for (const call of fake.calls) {
      const url = new URL(call.path, "http://x");
      const p = url.pathname.split("/").filter(Boolean);
      const [group, rest] = p[0] === "api" ? ["", p.slice(2)] : [p[1]!, p.slice(3)];
      const parts = rest[0] === "namespaces" ? rest.slice(2) : rest;
      const resource = parts[0] + (parts[2] ? `/${parts[2]}` : "");
      const verb =
        call.method === "GET" ? (parts.length === 1 ? (url.searchParams.get("watch") === "true" ? "watch" : "list") : "get") : call.method === "PATCH" ? "patch" : call.method === "POST" ? "create" : call.method;
      used.add(`${verb} ${group}/${resource}`);
    }
    for (const u of used) expect(allowed, u).toContain(u);
    // Granted but not exercised here: status updates (patch is used), event patches, and cluster issuers' status (no HsmClusterIssuer in this run).
    expect([...allowed].filter((a) => !used.has(a)).sort()).toEqual([
      "get hsm-ca.io/hsmclusterissuers",
      "get hsm-ca.io/hsmissuers",
      "get cert-manager.io/certificaterequests",
      "patch /events",
      "patch hsm-ca.io/hsmclusterissuers/status",
      "update cert-manager.io/certificaterequests/status",
      "update hsm-ca.io/hsmclusterissuers/status",
      "update hsm-ca.io/hsmissuers/status",
    ].sort());
  });
});

describe("scripts/cert-manager-controller.mjs, the executable", () => {
  it("reads a kubeconfig, reports /readyz once watching, issues, and stops cleanly on SIGTERM", async () => {
    // One controller at a time, as deployed: the in-process one steps aside.
    await controller.stop();
    const dir = tempDir("kubeconfig-");
    const kubeconfig = path.join(dir, "config");
    fs.writeFileSync(
      kubeconfig,
      [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        "- name: fake",
        `  cluster: {server: "${server}", insecure-skip-tls-verify: true}`,
        "users:",
        "- name: controller",
        `  user: {token: ${fake.token}}`,
        "contexts:",
        "- name: fake",
        "  context: {cluster: fake, user: controller}",
        "current-context: fake",
        "",
      ].join("\n"),
    );
    const healthPort = await freePort();
    const child = spawn(process.execPath, [path.join(REPO, "scripts/cert-manager-controller.mjs")], {
      cwd: REPO,
      env: {
        PATH: process.env.PATH ?? "",
        HOME: dir,
        KUBECONFIG: kubeconfig,
        HSM_CA_CLUSTER_RESOURCE_NAMESPACE: "hsm-ca-system",
        HSM_CA_CONTROLLER_HEALTH_PORT: String(healthPort),
      },
    });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
    try {
      const readyz = async () => (await fetch(`http://127.0.0.1:${healthPort}/readyz`).catch(() => undefined))?.status;
      const probe = { status: undefined as number | undefined };
      await waitFor("/readyz 200", () => {
        void readyz().then((s) => (probe.status = s));
        return probe.status === 200 ? true : undefined;
      });
      putRequest(
        certificateRequest({ name: "cli-1", csrPem: makeCsr({ subject: "/", san: "DNS:cli.apps.svc" }).csr, conditions: [approvedByCertManager()] }),
      );
      const ready = await waitFor("cli-1 Ready", () => (readyOf("cli-1")?.status === "True" ? readyOf("cli-1") : undefined));
      expect(ready.reason).toBe("Issued");
      // The controller logs after the API server answered its patch, which the poll above may beat.
      await waitFor("the status line in the log", () => stderr.includes("certificate request status written") || undefined);
      expect(stderr).not.toContain(token);
    } finally {
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
