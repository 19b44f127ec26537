import cluster, { type Worker } from "node:cluster";
import type { Logger } from "pino";
import type { Config } from "./config.ts";
import { startService } from "./service.ts";

/**
 * `hsm-ca serve` with HSM_CA_WORKERS above 1: that many service processes
 * (node:cluster) share the HTTPS and HTTP listeners, so TLS, HTTP and
 * certificate encoding use every core, not one. Each worker is a full
 * replica (its own HSM sessions and database connections); replicas already
 * share one database and token safely (rotation, CRLs, audit chain,
 * ACME nonces). The first worker starts alone: on a first start it creates
 * the token's PINs and the hierarchy that the others then open.
 */

interface Ready {
  hsmCaReady: true;
  https: string;
  http: string;
}

/** A replaced worker that dies again this soon is not replaced once more: something is wrong, not transient. */
const CRASH_LOOP_MS = 10_000;

export async function serveWorkers(config: Config, log: Logger, announce: (text: string) => void): Promise<number> {
  if (cluster.isWorker) return runWorker(config, log, announce);
  const workers = new Set<Worker>();
  let stopping = false;
  const fork = (): Promise<Worker> =>
    new Promise((resolve, reject) => {
      const w = cluster.fork();
      const started = Date.now();
      workers.add(w);
      w.once("message", (m: Ready) => {
        if (m?.hsmCaReady) resolve(w);
      });
      w.once("exit", (code, signal) => {
        workers.delete(w);
        reject(new Error(`a worker exited before it served (${signal ?? `exit ${code}`})`));
        if (stopping) return;
        log.error({ pid: w.process.pid, code, signal }, "a worker exited");
        if (Date.now() - started > CRASH_LOOP_MS) void fork().catch((err: Error) => log.error({ err: err.message }, "cannot replace the worker"));
      });
    });
  try {
    await fork();
    await Promise.all(Array.from({ length: config.workers - 1 }, fork));
  } catch (err) {
    stopping = true;
    for (const w of workers) w.kill("SIGTERM");
    throw err;
  }
  log.info({ workers: config.workers }, "hsm-ca workers are serving");
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  stopping = true;
  await Promise.all(
    [...workers].map(
      (w) =>
        new Promise<void>((resolve) => {
          w.once("exit", () => resolve());
          w.kill("SIGTERM");
        }),
    ),
  );
  return 0;
}

async function runWorker(config: Config, log: Logger, announce: (text: string) => void): Promise<number> {
  const service = await startService(config, log.child({ worker: cluster.worker?.id }), announce);
  process.send?.({ hsmCaReady: true, https: service.httpsUrl, http: service.httpUrl } satisfies Ready);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  await service.close();
  return 0;
}
