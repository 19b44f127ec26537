import type { Logger } from "pino";
import type { HsmCaClient, HsmCaEndpoint } from "./hsm-ca-client.ts";
import { hsmCaClient } from "./hsm-ca-client.ts";
import { issuerIsReady, issuerKeyOf } from "./issuer-spec.ts";
import type { CachedInformer, KubeApi } from "./kube-api.ts";
import { reconcileIssuer } from "./reconcile-issuer.ts";
import { isFinished, issuerKeyOfRequest, reconcileRequest, type SigningMemory } from "./reconcile-request.ts";
import { CLUSTER_ISSUER_KIND, ISSUER_KIND, type CertificateRequest, type Condition, type HsmIssuer, type IssuerKey } from "./resources.ts";
import { WorkQueue } from "./work-queue.ts";

/**
 * The thin loop around the reconcilers: informers feed a work queue, each key
 * is reconciled from the informer's cache, the outcome is written as a status
 * patch, and retries are scheduled. One replica at a time (no leader
 * election): deploy/cert-manager/deployment.yaml runs one with Recreate.
 */

export interface ControllerOptions {
  kube: KubeApi;
  clusterResourceNamespace: string;
  log: Logger;
  /** How often a Ready issuer is checked again. */
  issuerRecheckMs?: number;
  /** hsm-ca clients; tests may pass their own. */
  connect?: (endpoint: HsmCaEndpoint) => HsmCaClient;
  queue?: { baseDelayMs?: number; maxDelayMs?: number; concurrency?: number };
  now?: () => Date;
}

export interface Controller {
  /** Resolves when every informer has listed once (list errors are retried every few seconds meanwhile). */
  started: Promise<void>;
  /** Resolves once nothing is queued or running. */
  idle(): Promise<void>;
  stop(): Promise<void>;
}

const DEFAULT_RECHECK_MS = 10 * 60_000;
const INFORMER_RESTART_MS = 5_000;

export function startController(opts: ControllerOptions): Controller {
  const { kube, log } = opts;
  const now = opts.now ?? (() => new Date());
  const connect = opts.connect ?? hsmCaClient;
  const memory = new Map<string, SigningMemory>();
  const recheckMs = opts.issuerRecheckMs ?? DEFAULT_RECHECK_MS;
  let stopping = false;
  const restarts = new Set<NodeJS.Timeout>();

  const issuerCache = (kind: IssuerKey["kind"]) => (kind === CLUSTER_ISSUER_KIND ? kube.clusterIssuers : kube.issuers);
  const getIssuer = async (key: IssuerKey) => issuerCache(key.kind).get(key.name, key.namespace) as HsmIssuer | undefined;

  const queue = new WorkQueue((key) => handle(key), {
    ...opts.queue,
    onError: (key, err) => log.error({ key, err: (err as Error).message }, "reconcile failed; retrying with backoff"),
  });

  async function handle(key: string): Promise<void> {
    const [kind, ...rest] = key.split("/");
    if (kind === "CertificateRequest") return handleRequest(rest[0]!, rest[1]!, key);
    if (kind === ISSUER_KIND) return handleIssuer({ kind: ISSUER_KIND, namespace: rest[0]!, name: rest[1]! }, key);
    if (kind === CLUSTER_ISSUER_KIND) return handleIssuer({ kind: CLUSTER_ISSUER_KIND, name: rest[0]! }, key);
  }

  async function handleRequest(namespace: string, name: string, key: string): Promise<void> {
    const request = kube.requests.get(name, namespace) as CertificateRequest | undefined;
    if (!request) return queue.forget(key);
    const outcome = await reconcileRequest(request, {
      clusterResourceNamespace: opts.clusterResourceNamespace,
      getIssuer,
      readSecret: kube.readSecret,
      connect,
      memory,
      now,
    });
    const uid = request.metadata.uid ?? `${namespace}/${name}`;
    if (outcome.action === "ignore") {
      log.debug({ request: `${namespace}/${name}`, why: outcome.why }, "certificate request ignored");
      if (isFinished(request)) memory.delete(uid);
      return queue.forget(key);
    }
    if (!sameRequestStatus(request.status, outcome.status)) {
      const written = await kube.patchRequestStatus(request, outcome.status);
      if (written === "gone") {
        memory.delete(uid);
        return queue.forget(key);
      }
      // Someone changed the request since the cache saw it: the informer brings the new version, which runs again.
      if (written === "conflict") return void queue.addAfter(key, 200);
      const ready = outcome.status.conditions?.find((c) => c.type === "Ready");
      log.info({ request: `${namespace}/${name}`, reason: ready?.reason, message: ready?.message }, "certificate request status written");
      if (outcome.event) await kube.recordEvent(request, outcome.event).catch((err) => log.warn({ err: (err as Error).message }, "event not recorded"));
    }
    if (outcome.final) {
      memory.delete(uid);
      return queue.forget(key);
    }
    if (outcome.retryAfterMs) queue.addAfter(key, outcome.retryAfterMs);
    else queue.retryLater(key);
  }

  async function handleIssuer(ref: IssuerKey, key: string): Promise<void> {
    const issuer = (await getIssuer(ref)) as HsmIssuer | undefined;
    if (!issuer) return queue.forget(key);
    const outcome = await reconcileIssuer(issuer, { clusterResourceNamespace: opts.clusterResourceNamespace, readSecret: kube.readSecret, connect, now });
    if (!sameConditions(issuer.status?.conditions, outcome.status.conditions)) {
      const written = await kube.patchIssuerStatus(issuer, { ...issuer.status, ...outcome.status });
      if (written === "gone") return queue.forget(key);
      if (written === "conflict") return void queue.addAfter(key, 200);
      const ready = outcome.status.conditions.find((c) => c.type === "Ready");
      log.info({ issuer: key, ready: ready?.status, reason: ready?.reason, message: ready?.message }, "issuer status written");
    }
    if (outcome.ready) {
      queue.forget(key);
      queue.addAfter(key, recheckMs);
    } else if (outcome.retry) {
      queue.retryLater(key);
    } else {
      queue.forget(key);
    }
  }

  /** Requests waiting on an issuer that just became Ready run now, not at the end of their backoff. */
  function wakeRequestsOf(issuer: HsmIssuer): void {
    const key = issuerKeyOf(issuer);
    for (const request of kube.requests.list() as CertificateRequest[]) {
      const ref = issuerKeyOfRequest(request);
      if (!ref || ref.kind !== key.kind || ref.name !== key.name || ref.namespace !== key.namespace || isFinished(request)) continue;
      const requestKey = requestKeyOf(request);
      queue.forget(requestKey);
      queue.add(requestKey);
    }
  }

  function onRequest(request: CertificateRequest): void {
    if (!issuerKeyOfRequest(request) || isFinished(request)) return;
    queue.add(requestKeyOf(request));
  }

  function onIssuer(event: "add" | "update", issuer: HsmIssuer): void {
    const key = issuerQueueKey(issuerKeyOf(issuer));
    const ready = issuerIsReady(issuer);
    // Our own status writes come back as updates: check again only for a new spec, or at startup.
    if (event === "add" || (!ready.ready && !hasCurrentReadyCondition(issuer))) queue.add(key);
    if (ready.ready) wakeRequestsOf(issuer);
  }

  const informers: Array<CachedInformer<any>> = [kube.requests, kube.issuers, kube.clusterIssuers];
  kube.requests.on("add", (o) => onRequest(o as CertificateRequest));
  kube.requests.on("update", (o) => onRequest(o as CertificateRequest));
  kube.requests.on("delete", (o) => memory.delete((o as CertificateRequest).metadata.uid ?? ""));
  for (const inf of [kube.issuers, kube.clusterIssuers]) {
    inf.on("add", (o) => onIssuer("add", o as HsmIssuer));
    inf.on("update", (o) => onIssuer("update", o as HsmIssuer));
    inf.on("delete", (o) => queue.forget(issuerQueueKey(issuerKeyOf(o as HsmIssuer))));
  }
  for (const inf of informers) {
    // An informer stops on a watch or list error; start it again, as client-go's reflector would.
    inf.on("error", (err) => {
      if (stopping) return;
      log.warn({ err: (err as Error)?.message ?? String(err) }, "watch ended with an error; restarting");
      const timer = setTimeout(() => {
        restarts.delete(timer);
        if (!stopping) inf.start().catch((e) => log.error({ err: (e as Error).message }, "informer restart failed"));
      }, INFORMER_RESTART_MS);
      restarts.add(timer);
    });
  }

  // Issuers first, so that requests find their issuer in the cache.
  const started = (async () => {
    await Promise.all([kube.issuers.start(), kube.clusterIssuers.start()]);
    await kube.requests.start();
    await kube.listed;
    log.info({ clusterResourceNamespace: opts.clusterResourceNamespace }, "cert-manager external issuer controller watching");
  })();

  return {
    started,
    idle: () => queue.idle(),
    async stop() {
      stopping = true;
      for (const timer of restarts) clearTimeout(timer);
      queue.stop();
      await Promise.all(informers.map((i) => i.stop().catch(() => {})));
      await queue.idle();
    },
  };
}

function requestKeyOf(request: CertificateRequest): string {
  return `CertificateRequest/${request.metadata.namespace}/${request.metadata.name}`;
}

function issuerQueueKey(key: IssuerKey): string {
  return key.namespace ? `${key.kind}/${key.namespace}/${key.name}` : `${key.kind}/${key.name}`;
}

/** A Ready condition (True or not) written for the issuer's current generation. */
function hasCurrentReadyCondition(issuer: HsmIssuer): boolean {
  const ready = issuer.status?.conditions?.find((c) => c.type === "Ready");
  return ready !== undefined && (ready.observedGeneration ?? 0) >= (issuer.metadata.generation ?? 0);
}

function sameConditions(a: readonly Condition[] | undefined, b: readonly Condition[] | undefined): boolean {
  const norm = (list: readonly Condition[] | undefined) =>
    JSON.stringify((list ?? []).map((c) => [c.type, c.status, c.reason ?? "", c.message ?? "", c.observedGeneration ?? null]).sort());
  return norm(a) === norm(b);
}

function sameRequestStatus(a: CertificateRequest["status"], b: CertificateRequest["status"]): boolean {
  return (
    sameConditions(a?.conditions, b?.conditions) &&
    (a?.certificate ?? "") === (b?.certificate ?? "") &&
    (a?.ca ?? "") === (b?.ca ?? "") &&
    (a?.failureTime ?? "") === (b?.failureTime ?? "")
  );
}
