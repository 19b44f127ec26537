import os from "node:os";
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  type Informer,
  type KubeConfig,
  type KubernetesObject,
  type ObjectCache,
} from "@kubernetes/client-node";
import type { KubeEventNote } from "./reconcile-request.ts";
import {
  CERT_MANAGER_GROUP,
  CERT_MANAGER_VERSION,
  CERTIFICATE_REQUEST_PLURAL,
  CLUSTER_ISSUER_PLURAL,
  ISSUER_GROUP,
  ISSUER_PLURAL,
  ISSUER_VERSION,
  type CertificateRequest,
  type CertificateRequestStatus,
  type HsmIssuer,
} from "./resources.ts";

/**
 * The few Kubernetes API calls the controller makes, through
 * @kubernetes/client-node: list/watch (informers) of CertificateRequests and
 * both issuer kinds, get of one Secret, merge patches of status
 * subresources, and Events. The RBAC in deploy/cert-manager/rbac.yaml grants
 * exactly these.
 */

export type WriteResult = "ok" | "conflict" | "gone";

export type CachedInformer<T extends KubernetesObject> = Informer<T> & ObjectCache<T>;

export interface KubeApi {
  /** Resolves once every informer below has listed its objects (an informer's start() resolves even when the list fails). */
  listed: Promise<void>;
  requests: CachedInformer<CertificateRequest & KubernetesObject>;
  issuers: CachedInformer<HsmIssuer & KubernetesObject>;
  clusterIssuers: CachedInformer<HsmIssuer & KubernetesObject>;
  readSecret(namespace: string, name: string, key: string): Promise<string | undefined>;
  patchRequestStatus(request: CertificateRequest, status: CertificateRequestStatus): Promise<WriteResult>;
  patchIssuerStatus(issuer: HsmIssuer, status: HsmIssuer["status"]): Promise<WriteResult>;
  recordEvent(request: CertificateRequest, note: KubeEventNote): Promise<void>;
}

const REPORTING_COMPONENT = "hsm-ca.io/cert-manager-controller";

export function kubeApi(kc: KubeConfig): KubeApi {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const core = kc.makeApiClient(CoreV1Api);
  const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

  const lists: Promise<void>[] = [];
  const informer = <T extends KubernetesObject>(group: string, version: string, plural: string) => {
    let listed!: () => void;
    lists.push(new Promise<void>((resolve) => (listed = resolve)));
    return makeInformer<T>(kc, `/apis/${group}/${version}/${plural}`, async () => {
      const list = await custom.listClusterCustomObject({ group, version, plural });
      listed();
      return list;
    });
  };

  /** The resourceVersion makes the patch conditional: a status written from a stale read is refused (409), not merged. */
  const statusPatch = (meta: { resourceVersion?: string }, status: unknown) => ({
    ...(meta.resourceVersion ? { metadata: { resourceVersion: meta.resourceVersion } } : {}),
    status,
  });

  const requests = informer<CertificateRequest & KubernetesObject>(CERT_MANAGER_GROUP, CERT_MANAGER_VERSION, CERTIFICATE_REQUEST_PLURAL);
  const issuers = informer<HsmIssuer & KubernetesObject>(ISSUER_GROUP, ISSUER_VERSION, ISSUER_PLURAL);
  const clusterIssuers = informer<HsmIssuer & KubernetesObject>(ISSUER_GROUP, ISSUER_VERSION, CLUSTER_ISSUER_PLURAL);

  return {
    listed: Promise.all(lists).then(() => undefined),
    requests,
    issuers,
    clusterIssuers,

    async readSecret(namespace, name, key) {
      try {
        const secret = await core.readNamespacedSecret({ namespace, name });
        const value = secret.data?.[key];
        return value === undefined ? undefined : Buffer.from(value, "base64").toString("utf8");
      } catch (err) {
        if (err instanceof ApiException && err.code === 404) return undefined;
        throw withoutBody(err);
      }
    },

    patchRequestStatus(request, status) {
      return write(() =>
        custom.patchNamespacedCustomObjectStatus(
          {
            group: CERT_MANAGER_GROUP,
            version: CERT_MANAGER_VERSION,
            plural: CERTIFICATE_REQUEST_PLURAL,
            namespace: request.metadata.namespace!,
            name: request.metadata.name,
            body: statusPatch(request.metadata, status),
          },
          mergePatch,
        ),
      );
    },

    patchIssuerStatus(issuer, status) {
      const base = { group: ISSUER_GROUP, version: ISSUER_VERSION, name: issuer.metadata.name, body: statusPatch(issuer.metadata, status) };
      return write(() =>
        issuer.metadata.namespace
          ? custom.patchNamespacedCustomObjectStatus({ ...base, plural: ISSUER_PLURAL, namespace: issuer.metadata.namespace }, mergePatch)
          : custom.patchClusterCustomObjectStatus({ ...base, plural: CLUSTER_ISSUER_PLURAL }, mergePatch),
      );
    },

    async recordEvent(request, note) {
      const now = new Date();
      await core.createNamespacedEvent({
        namespace: request.metadata.namespace!,
        body: {
          metadata: { generateName: `${request.metadata.name}.`, namespace: request.metadata.namespace },
          involvedObject: {
            apiVersion: request.apiVersion,
            kind: request.kind,
            name: request.metadata.name,
            namespace: request.metadata.namespace,
            uid: request.metadata.uid,
            resourceVersion: request.metadata.resourceVersion,
          },
          type: note.type,
          reason: note.reason,
          message: note.message,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
          source: { component: REPORTING_COMPONENT },
          reportingComponent: REPORTING_COMPONENT,
          reportingInstance: os.hostname(),
        },
      });
    },
  };
}

async function write(call: () => Promise<unknown>): Promise<WriteResult> {
  try {
    await call();
    return "ok";
  } catch (err) {
    if (err instanceof ApiException && err.code === 409) return "conflict";
    if (err instanceof ApiException && err.code === 404) return "gone";
    throw withoutBody(err);
  }
}

/**
 * client-node's ApiException message embeds the whole response body and
 * headers. Only the code and, from a Status answer, its message go on.
 */
function withoutBody(err: unknown): Error {
  if (err instanceof ApiException) {
    const body = typeof err.body === "string" ? safeJson(err.body) : err.body;
    const message = body?.kind === "Status" && typeof body.message === "string" ? `: ${body.message}` : "";
    return new Error(`Kubernetes API answered HTTP ${err.code}${message}`);
  }
  return err instanceof Error ? err : new Error(String(err));
}

function safeJson(text: string): any {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
