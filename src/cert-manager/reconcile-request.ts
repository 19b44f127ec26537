import { findCondition, hasCondition, kubeTime, withCondition } from "./conditions.ts";
import { hsmCaValidity, parseGoDuration } from "./duration.ts";
import type { HsmCaAnswer, HsmCaClient, HsmCaEndpoint, Issued } from "./hsm-ca-client.ts";
import { checkIssuerSpec, issuerIsReady } from "./issuer-spec.ts";
import {
  CLUSTER_ISSUER_KIND,
  ISSUER_GROUP,
  ISSUER_KIND,
  PROFILE_ANNOTATION,
  issuerKeyText,
  type CertificateRequest,
  type CertificateRequestStatus,
  type HsmIssuer,
  type IssuerKey,
} from "./resources.ts";

/**
 * One CertificateRequest, one decision: cert-manager's external issuer
 * contract (cert-manager.io/docs/contributing/external-issuers) as a function
 * of the request, its issuer, the token Secret and hsm-ca. It returns the
 * status to write; the watch loop (controller.ts) writes it and schedules the
 * retry. Nothing here talks to Kubernetes.
 */

export interface RequestReconcileDeps {
  /** Where an HsmClusterIssuer's token Secret lives. */
  clusterResourceNamespace: string;
  getIssuer(key: IssuerKey): Promise<HsmIssuer | undefined>;
  /** One value of a Secret, or undefined when the Secret or the key is missing. */
  readSecret(namespace: string, name: string, key: string): Promise<string | undefined>;
  connect(endpoint: HsmCaEndpoint): HsmCaClient;
  /**
   * Work done for a request whose status write may not have landed (by
   * metadata.uid): a certificate already signed, an hsm-ca approval request
   * already made. A retry picks it up instead of signing a second time.
   */
  memory: Map<string, SigningMemory>;
  now(): Date;
}

export type SigningMemory = { issued: Issued; rootPem?: string } | { approvalRequestId: string };

export interface KubeEventNote {
  type: "Normal" | "Warning";
  reason: string;
  message: string;
}

export type RequestOutcome =
  | { action: "ignore"; why: string }
  | {
      action: "update";
      status: CertificateRequestStatus;
      /** Issued, Failed or Denied: no further work on this request. */
      final: boolean;
      /** Pending: look again then (ms); unset for a final outcome. Zero: the loop's own backoff. */
      retryAfterMs?: number;
      event?: KubeEventNote;
    };

/** How long to wait before asking hsm-ca again about an approval request. */
const APPROVAL_POLL_MS = 30_000;

/** The issuer a request names, when it is one of ours. */
export function issuerKeyOfRequest(request: CertificateRequest): IssuerKey | undefined {
  const ref = request.spec?.issuerRef;
  if (!ref || ref.group !== ISSUER_GROUP) return undefined;
  if (ref.kind === ISSUER_KIND) return { kind: ISSUER_KIND, name: ref.name, namespace: request.metadata.namespace };
  if (ref.kind === CLUSTER_ISSUER_KIND) return { kind: CLUSTER_ISSUER_KIND, name: ref.name };
  return undefined;
}

/** Issued, failed or denied already: a final Ready condition (cert-manager also sets failureTime on the last two). */
export function isFinished(request: CertificateRequest): boolean {
  const conditions = request.status?.conditions;
  return (
    hasCondition(conditions, "Ready", "True") ||
    hasCondition(conditions, "Ready", "False", "Failed") ||
    hasCondition(conditions, "Ready", "False", "Denied") ||
    request.status?.failureTime !== undefined
  );
}

export async function reconcileRequest(request: CertificateRequest, deps: RequestReconcileDeps): Promise<RequestOutcome> {
  const issuerKey = issuerKeyOfRequest(request);
  if (!issuerKey) return { action: "ignore", why: "its issuerRef names no hsm-ca.io issuer" };
  if (isFinished(request)) return { action: "ignore", why: "it is finished (Ready True, Failed or Denied)" };

  const now = deps.now();
  const conditions = request.status?.conditions;
  const pending = (message: string, retryAfterMs = 0): RequestOutcome => ({
    action: "update",
    final: false,
    retryAfterMs,
    status: { ...request.status, conditions: withCondition(conditions, { type: "Ready", status: "False", reason: "Pending", message }, now) },
  });
  const failed = (message: string, reason: "Failed" | "Denied" = "Failed"): RequestOutcome => ({
    action: "update",
    final: true,
    status: {
      ...request.status,
      conditions: withCondition(conditions, { type: "Ready", status: "False", reason, message }, now),
      failureTime: kubeTime(now),
    },
    event: { type: "Warning", reason, message },
  });

  if (hasCondition(conditions, "Denied", "True")) {
    const denied = findCondition(conditions, "Denied");
    return failed(`The CertificateRequest was denied by an approver${denied?.reason ? ` (${denied.reason})` : ""}; nothing was signed`, "Denied");
  }
  if (!hasCondition(conditions, "Approved", "True")) return { action: "ignore", why: "it is not approved yet" };

  const uid = request.metadata.uid ?? `${request.metadata.namespace}/${request.metadata.name}`;
  const remembered = deps.memory.get(uid);
  if (remembered && "issued" in remembered && remembered.rootPem) return issued(request, remembered.issued, remembered.rootPem, now);

  const issuer = await deps.getIssuer(issuerKey);
  if (!issuer) return pending(`Waiting for ${issuerKeyText(issuerKey)} to exist`);
  const readiness = issuerIsReady(issuer);
  if (!readiness.ready) return pending(`Waiting for ${issuerKeyText(issuerKey)} to be Ready: ${readiness.why}`);
  const spec = checkIssuerSpec(issuer, deps.clusterResourceNamespace);
  if (!spec.ok) return pending(`${issuerKeyText(issuerKey)} cannot be used: ${spec.problem}`);
  const token = await deps.readSecret(spec.secret.namespace, spec.secret.name, spec.secret.key);
  if (!token) return pending(`Waiting for Secret ${spec.secret.namespace}/${spec.secret.name} with key ${spec.secret.key} (the hsm-ca API token)`);
  const client = deps.connect({ url: spec.url, caBundlePem: spec.caBundlePem, token: token.trim() });

  const finishIssued = async (done: Issued): Promise<RequestOutcome> => {
    // Remembered before anything else can fail: a retry must not sign again.
    deps.memory.set(uid, { issued: done });
    const root = await client.rootPem();
    if (root.kind !== "ok") return pending(`Signed (serial ${done.serial}) but hsm-ca's root could not be fetched: ${describe(root)}`);
    deps.memory.set(uid, { issued: done, rootPem: root.value });
    return issued(request, done, root.value, now);
  };
  if (remembered && "issued" in remembered) return finishIssued(remembered.issued);

  if (remembered && "approvalRequestId" in remembered) {
    const id = remembered.approvalRequestId;
    const state = await client.approvalRequest(id);
    if (state.kind === "unavailable") return pending(`hsm-ca is unavailable: ${state.detail}`, seconds(state.retryAfterSeconds));
    if (state.kind === "refused") {
      deps.memory.delete(uid);
      return failed(`hsm-ca approval request ${id} cannot be read: ${state.detail}`);
    }
    const s = state.value;
    if (s.status === "done" && s.issued) return finishIssued(s.issued);
    if (s.status === "pending" || s.status === "approved") return pending(`Waiting for hsm-ca approvals: request ${id} is ${s.status}`, APPROVAL_POLL_MS);
    deps.memory.delete(uid);
    return failed(`hsm-ca approval request ${id} ended ${s.status}${s.detail ? `: ${s.detail}` : ""}; nothing was signed`);
  }

  const csrPem = decodeCsr(request.spec.request);
  if (!csrPem) return failed("spec.request is not base64 of a PEM CERTIFICATE REQUEST");
  let validity: string | undefined;
  if (request.spec.duration) {
    const ms = parseGoDuration(request.spec.duration);
    if (ms === undefined) return failed(`spec.duration "${request.spec.duration}" is not a duration`);
    validity = hsmCaValidity(ms);
  }
  // isCA: true is signed only by an issuer set up for it (spec.caProfile), from a CA profile; hsm-ca
  // checks the kind too (isCA below), so an annotation cannot turn either kind into the other.
  const isCA = request.spec.isCA === true;
  if (isCA && !spec.caProfile) {
    return failed(`isCA: true needs a CA profile: ${issuerKeyText(issuerKey)} has no spec.caProfile (such as mesh-intermediate); nothing was signed`);
  }
  const profile = request.metadata.annotations?.[PROFILE_ANNOTATION] || (isCA ? spec.caProfile! : spec.profile);

  const answer = await client.issue({ csrPem, profile, validity, isCA });
  switch (answer.kind) {
    case "ok":
      if ("issued" in answer.value) return finishIssued(answer.value.issued);
      deps.memory.set(uid, { approvalRequestId: answer.value.awaiting.requestId });
      return pending(
        `Waiting for hsm-ca approvals: request ${answer.value.awaiting.requestId} needs ${answer.value.awaiting.required ?? "more"} admins to approve`,
        APPROVAL_POLL_MS,
      );
    case "unavailable":
      return pending(`hsm-ca is unavailable, will retry: ${answer.detail}`, seconds(answer.retryAfterSeconds));
    case "refused":
      // A token problem is the issuer's, not the request's: fixing the Secret lets it through.
      if (answer.status === 401) return pending(`hsm-ca did not accept the API token in Secret ${spec.secret.namespace}/${spec.secret.name}: ${answer.detail}`);
      if (answer.status === 429) return pending(`hsm-ca rate-limits this token, will retry: ${answer.detail}`, seconds(answer.retryAfterSeconds));
      return failed(`hsm-ca refused the request (${shortType(answer.problemType)}, profile ${profile}): ${answer.detail}`);
  }
}

function issued(request: CertificateRequest, done: Issued, rootPem: string, now: Date): RequestOutcome {
  const chain = [done.certificatePem, done.chainPem].map((p) => p.trim()).filter(Boolean).join("\n") + "\n";
  const message = `Certificate issued by hsm-ca, serial ${done.serial}`;
  return {
    action: "update",
    final: true,
    status: {
      ...request.status,
      certificate: Buffer.from(chain).toString("base64"),
      ca: Buffer.from(rootPem.trim() + "\n").toString("base64"),
      conditions: withCondition(request.status?.conditions, { type: "Ready", status: "True", reason: "Issued", message }, now),
    },
    event: { type: "Normal", reason: "Issued", message },
  };
}

function decodeCsr(b64: string | undefined): string | undefined {
  if (!b64) return undefined;
  const pem = Buffer.from(b64, "base64").toString("utf8");
  return /-----BEGIN (NEW )?CERTIFICATE REQUEST-----/.test(pem) ? pem : undefined;
}

function describe(a: HsmCaAnswer<unknown>): string {
  return a.kind === "ok" ? "ok" : a.detail;
}

function seconds(s: number | undefined): number {
  return s === undefined ? 0 : s * 1000;
}

function shortType(type: string): string {
  return type.replace(/^urn:hsm-ca:problem:/, "");
}
