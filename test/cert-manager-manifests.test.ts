import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import YAML from "yaml";
import {
  CLUSTER_ISSUER_KIND,
  CLUSTER_ISSUER_PLURAL,
  ISSUER_GROUP,
  ISSUER_KIND,
  ISSUER_PLURAL,
  ISSUER_VERSION,
} from "../src/cert-manager/resources.ts";
import { loadControllerSettings } from "../src/cert-manager/settings.ts";
import { hsmIssuer, issuerReady } from "./helpers/cert-manager.ts";
import { REPO } from "./helpers/cli.ts";
import { openssl, tempDir } from "./helpers/openssl.ts";

/**
 * deploy/cert-manager/ as data: no API server runs here to apply it, so the
 * manifests are parsed and checked against each other and the code, and
 * issuer objects are validated with the CRDs' own openAPIV3Schema by a small
 * structural-schema checker below (the subset of OpenAPI v3 the CRDs use).
 */

const DIR = path.join(REPO, "deploy/cert-manager");
const docs = (file: string): any[] => YAML.parseAllDocuments(fs.readFileSync(path.join(DIR, file), "utf8")).map((d) => d.toJS());
const byKind = (file: string, kind: string) => docs(file).filter((d) => d.kind === kind);

/** Errors of `value` against a structural schema: type, required, properties (unknown fields refused), items, enum, pattern, lengths, byte and date-time formats. */
function schemaErrors(schema: any, value: unknown, at = ""): string[] {
  const errors: string[] = [];
  const type = Array.isArray(value) ? "array" : value === null ? "null" : Number.isInteger(value) ? "integer" : typeof value;
  if (schema.type && !(schema.type === type || (schema.type === "number" && type === "integer"))) return [`${at || "."}: expected ${schema.type}, got ${type}`];
  if (schema.enum && !schema.enum.includes(value)) errors.push(`${at}: not one of ${schema.enum.join(", ")}`);
  if (typeof value === "string") {
    if (schema.minLength !== undefined && value.length < schema.minLength) errors.push(`${at}: shorter than ${schema.minLength}`);
    if (schema.maxLength !== undefined && value.length > schema.maxLength) errors.push(`${at}: longer than ${schema.maxLength}`);
    if (schema.pattern && !new RegExp(schema.pattern).test(value)) errors.push(`${at}: does not match ${schema.pattern}`);
    if (schema.format === "byte" && !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) errors.push(`${at}: not base64`);
    if (schema.format === "date-time" && Number.isNaN(Date.parse(value))) errors.push(`${at}: not a date-time`);
  }
  if (type === "object" && schema.properties && schema.type === "object") {
    const obj = value as Record<string, unknown>;
    for (const r of schema.required ?? []) if (obj[r] === undefined) errors.push(`${at}.${r}: required`);
    for (const [k, v] of Object.entries(obj)) {
      const sub = schema.properties[k];
      if (!sub) errors.push(`${at}.${k}: unknown field`);
      else errors.push(...schemaErrors(sub, v, `${at}.${k}`));
    }
  }
  if (type === "array" && schema.items) (value as unknown[]).forEach((v, i) => errors.push(...schemaErrors(schema.items, v, `${at}[${i}]`)));
  return errors;
}

const crds = byKind("crds.yaml", "CustomResourceDefinition");
const crdFor = (kind: string) => crds.find((c) => c.spec.names.kind === kind)!;
const schemaOf = (kind: string) => crdFor(kind).spec.versions.find((v: any) => v.name === ISSUER_VERSION).schema.openAPIV3Schema;

const dir = tempDir("manifests-");
openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", path.join(dir, "k.pem"), "-subj", "/CN=Test Root", "-days", "1", "-out", path.join(dir, "c.pem")]);
const rootPem = fs.readFileSync(path.join(dir, "c.pem"), "utf8");
fs.rmSync(dir, { recursive: true, force: true });

describe("deploy/cert-manager", () => {
  it("parses, and kustomization.yaml names every manifest except the examples", () => {
    const kustomization = docs("kustomization.yaml")[0];
    expect(kustomization.resources).toEqual(["namespace.yaml", "crds.yaml", "rbac.yaml", "approver-rbac.yaml", "deployment.yaml"]);
    for (const file of [...kustomization.resources, "examples/issuer.yaml", "examples/cluster-issuer.yaml", "examples/acme-cluster-issuer.yaml"]) {
      for (const d of YAML.parseAllDocuments(fs.readFileSync(path.join(DIR, file), "utf8"))) expect(d.errors, file).toEqual([]);
    }
  });

  it("defines HsmIssuer (namespaced) and HsmClusterIssuer (cluster-scoped) as the controller names them, with a status subresource", () => {
    expect(crds.map((c) => c.metadata.name).sort()).toEqual([`${CLUSTER_ISSUER_PLURAL}.${ISSUER_GROUP}`, `${ISSUER_PLURAL}.${ISSUER_GROUP}`]);
    for (const [kind, plural, scope] of [[ISSUER_KIND, ISSUER_PLURAL, "Namespaced"], [CLUSTER_ISSUER_KIND, CLUSTER_ISSUER_PLURAL, "Cluster"]] as const) {
      const crd = crdFor(kind);
      expect(crd.spec).toMatchObject({ group: ISSUER_GROUP, scope, names: { kind, plural } });
      const version = crd.spec.versions.find((v: any) => v.name === ISSUER_VERSION);
      expect(version).toMatchObject({ served: true, storage: true, subresources: { status: {} } });
      expect(version.additionalPrinterColumns.map((c: any) => c.name)).toContain("Ready");
    }
  });

  it("its schemas accept the issuers the controller is tested with and the status it writes, and refuse broken specs", () => {
    for (const kind of [ISSUER_KIND, CLUSTER_ISSUER_KIND] as const) {
      const issuer = hsmIssuer({ url: "https://hsm-ca.hsm-ca.svc:8443", rootPem, kind, conditions: [issuerReady(1)] });
      expect(schemaErrors(schemaOf(kind), issuer)).toEqual([]);
      const broken = (spec: Record<string, unknown>) => schemaErrors(schemaOf(kind), { ...issuer, spec: { ...issuer.spec, ...spec } });
      expect(broken({ url: "http://hsm-ca:8080" })).toEqual([expect.stringMatching(/^\.spec\.url: does not match/)]);
      expect(broken({ caBundle: "not base64!" })).toEqual([".spec.caBundle: not base64"]);
      expect(broken({ profile: "TLS Server" })).toEqual([expect.stringMatching(/^\.spec\.profile: does not match/)]);
      // spec.caProfile (isCA: true requests) is optional and named like a profile.
      expect(broken({ caProfile: "mesh-intermediate" })).toEqual([]);
      expect(broken({ caProfile: "Mesh Intermediate" })).toEqual([expect.stringMatching(/^\.spec\.caProfile: does not match/)]);
      expect(broken({ tokenSecretRef: { name: "x" } })).toEqual([".spec.tokenSecretRef.key: required"]);
      expect(broken({ tokenSecretRefs: {} })).toEqual([".spec.tokenSecretRefs: unknown field"]);
    }
  });

  it("its examples validate once their placeholders are filled in, and refer to these kinds", () => {
    const fill = (o: any) => JSON.parse(JSON.stringify(o).replaceAll("REPLACE_WITH_BASE64_OF_ROOT_PEM", Buffer.from(rootPem).toString("base64")));
    const namespaced = byKind("examples/issuer.yaml", ISSUER_KIND)[0];
    const cluster = byKind("examples/cluster-issuer.yaml", CLUSTER_ISSUER_KIND)[0];
    expect(schemaErrors(schemaOf(ISSUER_KIND), fill(namespaced))).toEqual([]);
    expect(schemaErrors(schemaOf(CLUSTER_ISSUER_KIND), fill(cluster))).toEqual([]);
    // Unfilled, the placeholder is refused by the API server rather than used.
    expect(schemaErrors(schemaOf(ISSUER_KIND), namespaced)).toEqual([".spec.caBundle: not base64"]);
    const secret = byKind("examples/issuer.yaml", "Secret")[0];
    expect(secret.metadata.namespace).toBe(namespaced.metadata.namespace);
    expect(Object.keys(secret.stringData)).toEqual([namespaced.spec.tokenSecretRef.key]);
    expect(secret.metadata.name).toBe(namespaced.spec.tokenSecretRef.name);
    for (const [file, issuer] of [["examples/issuer.yaml", namespaced], ["examples/cluster-issuer.yaml", cluster]]) {
      for (const cert of byKind(file, "Certificate")) {
        expect(cert.spec.issuerRef).toEqual({ group: ISSUER_GROUP, kind: issuer.kind, name: issuer.metadata.name });
      }
    }
    const acme = byKind("examples/acme-cluster-issuer.yaml", "ClusterIssuer")[0];
    expect(acme.spec.acme.server).toMatch(/^https:\/\/.+\/acme\/directory$/);
    expect(acme.spec.acme.solvers[0].http01).toBeDefined();
  });

  it("lets cert-manager's own approver approve requests for every HsmIssuer and HsmClusterIssuer", () => {
    const [role] = byKind("approver-rbac.yaml", "ClusterRole");
    expect(role.rules).toEqual([
      { apiGroups: ["cert-manager.io"], resources: ["signers"], verbs: ["approve"], resourceNames: [`${ISSUER_PLURAL}.${ISSUER_GROUP}/*`, `${CLUSTER_ISSUER_PLURAL}.${ISSUER_GROUP}/*`] },
    ]);
    const [binding] = byKind("approver-rbac.yaml", "ClusterRoleBinding");
    expect(binding.roleRef.name).toBe(role.metadata.name);
    expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: "cert-manager", namespace: "cert-manager" }]);
  });

  it("runs one controller replica as the unprivileged user, under the bound ServiceAccount, with settings it accepts and probes it answers", () => {
    const [deployment] = byKind("deployment.yaml", "Deployment");
    const [sa] = byKind("rbac.yaml", "ServiceAccount");
    const [binding] = byKind("rbac.yaml", "ClusterRoleBinding");
    expect(deployment.spec.replicas).toBe(1);
    expect(deployment.spec.strategy).toEqual({ type: "Recreate" });
    const pod = deployment.spec.template.spec;
    expect(pod.serviceAccountName).toBe(sa.metadata.name);
    expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: sa.metadata.name, namespace: sa.metadata.namespace }]);
    expect(deployment.metadata.namespace).toBe(sa.metadata.namespace);
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000 });
    const [container] = pod.containers;
    expect(container.command).toEqual(["node", "scripts/cert-manager-controller.mjs"]);
    expect(fs.existsSync(path.join(REPO, "scripts/cert-manager-controller.mjs"))).toBe(true);
    const env = Object.fromEntries(container.env.map((e: any) => [e.name, e.value ?? (e.valueFrom?.fieldRef?.fieldPath === "metadata.namespace" ? deployment.metadata.namespace : undefined)]));
    const settings = loadControllerSettings(env, "/nonexistent");
    expect(settings).toMatchObject({ clusterResourceNamespace: "hsm-ca", healthPort: 8081 });
    expect(container.ports).toEqual([{ name: "health", containerPort: settings.healthPort }]);
    expect(container.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "health" });
    expect(container.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "health" });
  });
});
