import crypto from "node:crypto";
import { CLUSTER_ISSUER_KIND, type HsmIssuer, type HsmIssuerSpec, type IssuerKey } from "./resources.ts";

/** An issuer's spec, checked and decoded, or why it cannot be used. */
export type CheckedIssuerSpec =
  | { ok: true; url: string; caBundlePem: string; profile: string; caProfile?: string; secret: { namespace: string; name: string; key: string } }
  | { ok: false; problem: string };

/**
 * The CRD's schema checks the shape; this checks what a schema cannot: that
 * caBundle is base64 of PEM certificates, and where the token Secret lives
 * (an HsmIssuer's namespace; for an HsmClusterIssuer the cluster resource
 * namespace, as cert-manager does for its ClusterIssuers).
 */
export function checkIssuerSpec(issuer: HsmIssuer, clusterResourceNamespace: string): CheckedIssuerSpec {
  const spec: Partial<HsmIssuerSpec> = issuer.spec ?? {};
  let url: URL;
  try {
    url = new URL(String(spec.url));
  } catch {
    return { ok: false, problem: `spec.url "${spec.url ?? ""}" is not a URL` };
  }
  if (url.protocol !== "https:") return { ok: false, problem: `spec.url must be an https:// URL (hsm-ca's API listener), not ${url.protocol}//` };
  const caBundlePem = decodeCaBundle(spec.caBundle);
  if (!caBundlePem) return { ok: false, problem: "spec.caBundle must be base64 of one or more PEM certificates (hsm-ca's root, from /ca/root.pem)" };
  if (!spec.profile) return { ok: false, problem: "spec.profile must name an hsm-ca profile" };
  if (spec.caProfile !== undefined && !/^[a-z0-9][a-z0-9-]*$/.test(spec.caProfile)) return { ok: false, problem: "spec.caProfile must name an hsm-ca CA profile" };
  const ref = spec.tokenSecretRef;
  if (!ref?.name || !ref.key) return { ok: false, problem: "spec.tokenSecretRef needs name and key" };
  const namespace = issuer.kind === CLUSTER_ISSUER_KIND ? clusterResourceNamespace : issuer.metadata.namespace;
  if (!namespace) return { ok: false, problem: "an HsmIssuer must have a namespace" };
  return {
    ok: true,
    url: url.toString().replace(/\/+$/, ""),
    caBundlePem,
    profile: spec.profile,
    ...(spec.caProfile ? { caProfile: spec.caProfile } : {}),
    secret: { namespace, name: ref.name, key: ref.key },
  };
}

function decodeCaBundle(b64: string | undefined): string | undefined {
  if (!b64 || !/^[A-Za-z0-9+/=\s]+$/.test(b64)) return undefined;
  const pem = Buffer.from(b64, "base64").toString("utf8");
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  if (!blocks) return undefined;
  try {
    for (const block of blocks) new crypto.X509Certificate(block);
  } catch {
    return undefined;
  }
  return blocks.join("\n") + "\n";
}

/** The issuer is Ready, and its Ready condition speaks of its current spec (the generation it saw). */
export function issuerIsReady(issuer: HsmIssuer): { ready: true } | { ready: false; why: string } {
  const ready = issuer.status?.conditions?.find((c) => c.type === "Ready");
  if (!ready) return { ready: false, why: "it has not been checked yet" };
  if ((ready.observedGeneration ?? 0) < (issuer.metadata.generation ?? 0)) return { ready: false, why: "its latest spec has not been checked yet" };
  if (ready.status !== "True") return { ready: false, why: ready.message ?? "its Ready condition is not True" };
  return { ready: true };
}

export function issuerKeyOf(issuer: HsmIssuer): IssuerKey {
  return issuer.kind === CLUSTER_ISSUER_KIND
    ? { kind: issuer.kind, name: issuer.metadata.name }
    : { kind: issuer.kind, name: issuer.metadata.name, namespace: issuer.metadata.namespace };
}
