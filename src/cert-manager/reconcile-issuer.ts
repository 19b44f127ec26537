import { withCondition } from "./conditions.ts";
import type { HsmCaClient, HsmCaEndpoint } from "./hsm-ca-client.ts";
import { checkIssuerSpec } from "./issuer-spec.ts";
import type { Condition, HsmIssuer } from "./resources.ts";

/**
 * An HsmIssuer or HsmClusterIssuer is Ready when hsm-ca answers /readyz over
 * TLS that chains to its caBundle and accepts its token for its profile.
 * Like reconcile-request.ts, this decides; controller.ts writes.
 */

export interface IssuerReconcileDeps {
  clusterResourceNamespace: string;
  readSecret(namespace: string, name: string, key: string): Promise<string | undefined>;
  connect(endpoint: HsmCaEndpoint): HsmCaClient;
  now(): Date;
}

export interface IssuerOutcome {
  status: { conditions: Condition[] };
  ready: boolean;
  /** Not ready for a reason that may pass (hsm-ca down, Secret missing or wrong): check again. A bad spec waits for an edit. */
  retry: boolean;
}

export async function reconcileIssuer(issuer: HsmIssuer, deps: IssuerReconcileDeps): Promise<IssuerOutcome> {
  const now = deps.now();
  const generation = issuer.metadata.generation;
  const outcome = (ready: boolean, reason: string, message: string, retry: boolean): IssuerOutcome => ({
    ready,
    retry,
    status: {
      conditions: withCondition(
        issuer.status?.conditions,
        { type: "Ready", status: ready ? "True" : "False", reason, message, ...(generation !== undefined ? { observedGeneration: generation } : {}) },
        now,
      ),
    },
  });

  const spec = checkIssuerSpec(issuer, deps.clusterResourceNamespace);
  if (!spec.ok) return outcome(false, "InvalidSpec", spec.problem, false);
  const token = await deps.readSecret(spec.secret.namespace, spec.secret.name, spec.secret.key);
  if (!token) return outcome(false, "SecretNotFound", `Secret ${spec.secret.namespace}/${spec.secret.name} with key ${spec.secret.key} (the hsm-ca API token) not found`, true);
  const client = deps.connect({ url: spec.url, caBundlePem: spec.caBundlePem, token: token.trim() });

  const ready = await client.ready();
  if (ready.kind !== "ok") return outcome(false, "Unreachable", `hsm-ca at ${spec.url} is not ready: ${ready.detail}`, true);
  // The CA profile too, when the issuer signs isCA: true requests.
  const profiles = spec.caProfile ? [spec.profile, spec.caProfile] : [spec.profile];
  for (const profile of profiles) {
    const covers = await client.tokenCovers(profile);
    if (covers.kind === "unavailable") return outcome(false, "Unreachable", `hsm-ca at ${spec.url} is not ready: ${covers.detail}`, true);
    if (covers.kind === "refused") {
      const why =
        covers.status === 401
          ? "hsm-ca does not accept the API token"
          : covers.status === 403
            ? `the API token may not issue from profile ${profile}`
            : `hsm-ca refused the token check for profile ${profile}: ${covers.detail}`;
      // Retried: an edited Secret does not change the issuer's generation, so no event would bring it back.
      return outcome(false, "TokenRefused", `${why} (Secret ${spec.secret.namespace}/${spec.secret.name})`, true);
    }
  }
  return outcome(true, "Verified", `hsm-ca at ${spec.url} is ready and accepts the token for profile ${profiles.join(" and ")}`, false);
}
