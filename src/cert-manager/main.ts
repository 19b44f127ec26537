import http from "node:http";
import { KubeConfig } from "@kubernetes/client-node";
import pino from "pino";
import { startController } from "./controller.ts";
import { kubeApi } from "./kube-api.ts";
import { loadControllerSettings } from "./settings.ts";

/**
 * scripts/cert-manager-controller.mjs: the cert-manager external issuer for
 * hsm-ca. Kubernetes credentials come from the pod's service account, or
 * KUBECONFIG / ~/.kube/config outside a cluster.
 */
let settings;
try {
  settings = loadControllerSettings();
} catch (err) {
  process.stderr.write(`hsm-ca cert-manager controller: ${(err as Error).message}\n`);
  process.exit(2);
}

// Synchronous: a controller logs little, and a line must not be lost when it exits.
const log = pino({ level: settings.logLevel, base: { service: "hsm-ca-cert-manager-controller" } }, pino.destination({ dest: 2, sync: true }));
const kc = new KubeConfig();
kc.loadFromDefault();

const controller = startController({
  kube: kubeApi(kc),
  clusterResourceNamespace: settings.clusterResourceNamespace,
  issuerRecheckMs: settings.issuerRecheckMs,
  log,
});

// Until the first lists succeed, /readyz says so and the log says why (CRDs missing, RBAC not bound, API unreachable).
let watching = false;
controller.started.then(
  () => (watching = true),
  (err) => {
    log.fatal({ err: (err as Error).message }, "cannot start watching");
    process.exit(1);
  },
);

const health =
  settings.healthPort > 0
    ? http
        .createServer((req, res) => {
          const ok = req.url === "/healthz" || (req.url === "/readyz" && watching);
          res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" }).end(ok ? "ok\n" : "not watching yet\n");
        })
        .listen(settings.healthPort)
    : undefined;

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    log.info({ signal }, "stopping");
    health?.close();
    void controller.stop().then(() => process.exit(0));
  });
}
