import fs from "node:fs";
import { z } from "zod";
import { parseDuration } from "../policy/duration.ts";

/** The controller's settings, from its environment (deploy/cert-manager/deployment.yaml sets them). */
export interface ControllerSettings {
  /** Where HsmClusterIssuers' token Secrets live, like cert-manager's --cluster-resource-namespace. */
  clusterResourceNamespace: string;
  logLevel: string;
  /** /healthz and /readyz for the kubelet; 0: none. */
  healthPort: number;
  issuerRecheckMs: number;
}

const SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

const schema = z.object({
  HSM_CA_CLUSTER_RESOURCE_NAMESPACE: z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, "a namespace name").optional(),
  HSM_CA_CONTROLLER_LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  HSM_CA_CONTROLLER_HEALTH_PORT: z.coerce.number().int().min(0).max(65535).default(8081),
  HSM_CA_ISSUER_RECHECK: z.string().refine((s) => parseDuration(s) !== undefined, 'a duration like "10m"').default("10m"),
});

export function loadControllerSettings(env: NodeJS.ProcessEnv = process.env, serviceAccountNamespaceFile = SERVICE_ACCOUNT_NAMESPACE): ControllerSettings {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`invalid setting ${issue.path.join(".")}: ${issue.message}`);
  }
  const e = parsed.data;
  const namespace = e.HSM_CA_CLUSTER_RESOURCE_NAMESPACE ?? readIfPresent(serviceAccountNamespaceFile);
  if (!namespace) throw new Error("set HSM_CA_CLUSTER_RESOURCE_NAMESPACE (outside a pod there is no namespace to default to)");
  return {
    clusterResourceNamespace: namespace,
    logLevel: e.HSM_CA_CONTROLLER_LOG_LEVEL,
    healthPort: e.HSM_CA_CONTROLLER_HEALTH_PORT,
    issuerRecheckMs: parseDuration(e.HSM_CA_ISSUER_RECHECK)!,
  };
}

function readIfPresent(file: string): string | undefined {
  try {
    return fs.readFileSync(file, "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}
