/**
 * The Kubernetes objects the controller reads and writes, typed as far as it
 * uses them: cert-manager's CertificateRequest (cert-manager.io/v1) and this
 * project's HsmIssuer / HsmClusterIssuer (hsm-ca.io/v1alpha1, CRDs in
 * deploy/cert-manager/crds.yaml).
 */

export const ISSUER_GROUP = "hsm-ca.io";
export const ISSUER_VERSION = "v1alpha1";
export const ISSUER_KIND = "HsmIssuer";
export const CLUSTER_ISSUER_KIND = "HsmClusterIssuer";
export const ISSUER_PLURAL = "hsmissuers";
export const CLUSTER_ISSUER_PLURAL = "hsmclusterissuers";

export const CERT_MANAGER_GROUP = "cert-manager.io";
export const CERT_MANAGER_VERSION = "v1";
export const CERTIFICATE_REQUEST_PLURAL = "certificaterequests";

/** On a Certificate (cert-manager copies it to its CertificateRequests) or a CertificateRequest: the hsm-ca profile to issue from. */
export const PROFILE_ANNOTATION = "hsm-ca.io/profile";

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  annotations?: Record<string, string>;
}

export type ConditionStatus = "True" | "False" | "Unknown";

export interface Condition {
  type: string;
  status: ConditionStatus;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
  observedGeneration?: number;
}

export interface IssuerReference {
  name: string;
  kind?: string;
  group?: string;
}

export interface CertificateRequest {
  apiVersion: "cert-manager.io/v1";
  kind: "CertificateRequest";
  metadata: ObjectMeta;
  spec: {
    /** base64 of the PEM CSR. */
    request: string;
    issuerRef: IssuerReference;
    /** A Go duration ("2160h0m0s"). */
    duration?: string;
    isCA?: boolean;
    usages?: string[];
    username?: string;
    uid?: string;
    groups?: string[];
    extra?: Record<string, string[]>;
  };
  status?: CertificateRequestStatus;
}

export interface CertificateRequestStatus {
  conditions?: Condition[];
  /** base64 of the PEM leaf followed by its intermediates. */
  certificate?: string;
  /** base64 of the PEM root. */
  ca?: string;
  failureTime?: string;
}

export interface HsmIssuerSpec {
  /** hsm-ca's HTTPS base URL, e.g. https://hsm-ca.hsm-ca.svc:8443 */
  url: string;
  /** base64 of the PEM root(s) that hsm-ca's HTTPS certificate chains to. */
  caBundle: string;
  /** The profile to issue from unless a request names another in its annotation. */
  profile: string;
  /**
   * The hsm-ca CA profile (such as mesh-intermediate) for requests with
   * isCA: true. Unset: such requests fail, so an issuer signs sub-CAs only
   * where it is set up to.
   */
  caProfile?: string;
  tokenSecretRef: { name: string; key: string };
}

export interface HsmIssuer {
  apiVersion: `${typeof ISSUER_GROUP}/${typeof ISSUER_VERSION}`;
  kind: typeof ISSUER_KIND | typeof CLUSTER_ISSUER_KIND;
  metadata: ObjectMeta;
  spec: HsmIssuerSpec;
  status?: { conditions?: Condition[] };
}

/** Which issuer object a request names; namespace is unset for a cluster issuer. */
export interface IssuerKey {
  kind: typeof ISSUER_KIND | typeof CLUSTER_ISSUER_KIND;
  name: string;
  namespace?: string;
}

export function issuerKeyText(key: IssuerKey): string {
  return key.namespace ? `${key.kind} ${key.namespace}/${key.name}` : `${key.kind} ${key.name}`;
}
