import crypto from "node:crypto";
import type { CertificateRequest, Condition, HsmIssuer } from "../../src/cert-manager/resources.ts";

/**
 * CertificateRequests and issuers in the shapes a cluster holds them. The
 * request is what cert-manager's certificates-request-manager controller
 * creates for a Certificate (owner reference, certificate-name/revision
 * annotations, spec.request as base64 PEM, usages, duration, user info
 * filled in by its webhook); the Approved and Denied conditions are what
 * cert-manager's internal approver and approver-policy write.
 */

export interface RequestFixture {
  csrPem: string;
  namespace?: string;
  name?: string;
  issuer?: { name: string; kind: string; group: string };
  duration?: string;
  isCA?: boolean;
  usages?: string[];
  annotations?: Record<string, string>;
  conditions?: Condition[];
  status?: CertificateRequest["status"];
}

export function certificateRequest(f: RequestFixture): CertificateRequest {
  const name = f.name ?? `web-tls-${crypto.randomBytes(3).toString("hex")}`;
  const certificateName = name.replace(/-[0-9a-f]{6}$/, "");
  return {
    apiVersion: "cert-manager.io/v1",
    kind: "CertificateRequest",
    metadata: {
      name,
      namespace: f.namespace ?? "apps",
      uid: crypto.randomUUID(),
      resourceVersion: String(1000 + crypto.randomInt(1000)),
      generation: 1,
      creationTimestamp: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
      annotations: {
        "cert-manager.io/certificate-name": certificateName,
        "cert-manager.io/certificate-revision": "1",
        "cert-manager.io/private-key-secret-name": `${certificateName}-x7k2p`,
        ...f.annotations,
      },
      ...({
        ownerReferences: [
          { apiVersion: "cert-manager.io/v1", kind: "Certificate", name: certificateName, uid: crypto.randomUUID(), controller: true, blockOwnerDeletion: true },
        ],
      } as object),
    },
    spec: {
      duration: f.duration ?? "2160h0m0s",
      issuerRef: f.issuer ?? { name: "hsm-ca", kind: "HsmIssuer", group: "hsm-ca.io" },
      request: Buffer.from(f.csrPem).toString("base64"),
      ...(f.isCA ? { isCA: true } : {}),
      usages: f.usages ?? ["digital signature", "key encipherment"],
      username: "system:serviceaccount:cert-manager:cert-manager",
      uid: crypto.randomUUID(),
      groups: ["system:serviceaccounts", "system:serviceaccounts:cert-manager", "system:authenticated"],
      extra: { "authentication.kubernetes.io/pod-name": ["cert-manager-7d9f8b6c5-abcde"] },
    },
    ...(f.status || f.conditions ? { status: { ...f.status, ...(f.conditions ? { conditions: f.conditions } : {}) } } : {}),
  };
}

const at = () => new Date(Date.now() - 2_000).toISOString().replace(/\.\d{3}Z$/, "Z");

/** cert-manager's internal approver (certificaterequests-approver controller). */
export const approvedByCertManager = (): Condition => ({
  type: "Approved",
  status: "True",
  reason: "cert-manager.io",
  message: "Certificate request has been approved by cert-manager.io",
  lastTransitionTime: at(),
});

/** approver-policy when no CertificateRequestPolicy matches. */
export const deniedByPolicy = (): Condition => ({
  type: "Denied",
  status: "True",
  reason: "policy.cert-manager.io",
  message: "No policy approved this request: [no-wildcards: spec.allowed.dnsNames.values: Invalid value: []string{\"*.apps.example.test\"}]",
  lastTransitionTime: at(),
});

export interface IssuerFixture {
  url: string;
  rootPem: string;
  profile?: string;
  /** spec.caProfile: the CA profile for isCA: true requests; unset by default. */
  caProfile?: string;
  kind?: "HsmIssuer" | "HsmClusterIssuer";
  name?: string;
  namespace?: string;
  secretName?: string;
  secretKey?: string;
  generation?: number;
  conditions?: Condition[];
}

export function hsmIssuer(f: IssuerFixture): HsmIssuer {
  const kind = f.kind ?? "HsmIssuer";
  return {
    apiVersion: "hsm-ca.io/v1alpha1",
    kind,
    metadata: {
      name: f.name ?? "hsm-ca",
      ...(kind === "HsmIssuer" ? { namespace: f.namespace ?? "apps" } : {}),
      uid: crypto.randomUUID(),
      resourceVersion: "500",
      generation: f.generation ?? 1,
    },
    spec: {
      url: f.url,
      caBundle: Buffer.from(f.rootPem).toString("base64"),
      profile: f.profile ?? "tls-server",
      ...(f.caProfile ? { caProfile: f.caProfile } : {}),
      tokenSecretRef: { name: f.secretName ?? "hsm-ca-token", key: f.secretKey ?? "token" },
    },
    ...(f.conditions ? { status: { conditions: f.conditions } } : {}),
  };
}

/** A Ready condition as the controller writes it after checking the issuer. */
export const issuerReady = (generation = 1): Condition => ({
  type: "Ready",
  status: "True",
  reason: "Verified",
  message: "checked",
  lastTransitionTime: at(),
  observedGeneration: generation,
});

export function readyCondition(status: CertificateRequest["status"] | HsmIssuer["status"]): Condition | undefined {
  return status?.conditions?.find((c) => c.type === "Ready");
}

/** PEM blocks of a base64 status field. */
export function pemBlocks(b64: string | undefined): string[] {
  return Buffer.from(b64 ?? "", "base64").toString("utf8").match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
}
