import cluster, { type Worker } from "node:cluster";
import type { Logger } from "pino";
import { commandsInService } from "./cli/in-service.ts";
import { oneLine } from "./cli/run-command.ts";
import type { Config } from "./config.ts";
import { createLogger } from "./logger.ts";
import { startService, type Service } from "./service.ts";

/**
 * The service as `hsm-ca serve` runs it: the CLI's commands answer on its
 * control socket (on PGlite, where the CLI cannot open the database beside it).
 */
export function startServiceWithCli(config: Config, log?: Logger, announce?: (text: string) => void): Promise<Service> {
  return startService(config, log, announce, { controlCommands: commandsInService });
}

/**
 * `hsm-ca serve`: one service process until SIGINT or SIGTERM. With
 * HSM_CA_WORKERS above 1 this process is the primary of that many workers
 * (node:cluster), which share the HTTPS and HTTP listeners so TLS, HTTP and
 * certificate encoding use every core, not one; node:cluster starts each
 * worker through the same entry, and it comes back here as one replica.
 */
export async function serve(config: Config): Promise<number> {
  const log = createLogger(config.logLevel);
  const announce = (text: string) => void process.stdout.write(text + "\n\n");
  let service: Service;
  try {
    if (cluster.isPrimary && config.workers > 1) return await superviseWorkers(config, log);
    service = await startServiceWithCli(config, cluster.isWorker ? log.child({ worker: cluster.worker?.id }) : log, announce);
  } catch (err) {
    process.stderr.write(`hsm-ca serve: ${oneLine(err)}\n`);
    return 1;
  }
  if (cluster.isWorker) process.send?.({ hsmCaReady: true, https: service.httpsUrl, http: service.httpUrl } satisfies Ready);
  await stopRequested();
  await service.close();
  return 0;
}

/** What a worker tells the primary once it serves. */
interface Ready {
  hsmCaReady: true;
  https: string;
  http: string;
}

/** A replaced worker that dies again this soon is not replaced once more: something is wrong, not transient. */
const CRASH_LOOP_MS = 10_000;

/**
 * The primary: forks the workers and replaces one that dies. Each worker is
 * a full replica (its own HSM sessions and database connections); replicas
 * already share one database and token safely (rotation, CRLs, audit chain,
 * ACME nonces). The first worker starts alone: on a first start it creates
 * the token's PINs and the hierarchy that the others then open.
 */
async function superviseWorkers(config: Config, log: Logger): Promise<number> {
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
  await stopRequested();
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

function stopRequested(): Promise<void> {
  return new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
}
