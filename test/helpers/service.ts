import fs from "node:fs";
import path from "node:path";
import { loadConfig, type Config } from "../../src/config.ts";
import { createLogger } from "../../src/logger.ts";
import { startServiceWithCli } from "../../src/serve.ts";
import type { Service } from "../../src/service.ts";
import { REPO, runCliInProcess } from "./cli.ts";
import { apiClient, type ApiRequest } from "./https.ts";
import { tempDir } from "./openssl.ts";
import { copyMigratedPglite } from "./pglite-template.ts";
import { createTestDatabase } from "./postgres.ts";

export type Backend = "pglite" | "postgres";

export interface TestService {
  service: Service;
  config: Config;
  /** Environment that points the CLI at this service's data and database. */
  env: Record<string, string>;
  api: ApiRequest;
  rootPem: string;
  chainPem: string;
  /** Creates an API token with the CLI's own code (in this process), as an admin would. */
  token(role: string, ...profiles: string[]): Promise<string>;
  stop(): Promise<void>;
}

/**
 * The service as a user runs it: the embedded SoftHSM2 token in a fresh
 * data directory, PGlite there (initialised and migrated, as after a first
 * start) or a fresh PostgreSQL database, loopback listeners on free ports.
 */
export async function startTestService(
  backend: Backend,
  extraEnv: Record<string, string> = {},
  /** Receives every log line (JSON) at debug level; default: no logs. */
  logSink?: (line: string) => void,
): Promise<TestService> {
  const dataDir = tempDir("hsmca-data-");
  const db = backend === "postgres" ? await createTestDatabase() : undefined;
  const env: Record<string, string> = {
    HSM_CA_DATA_DIR: dataDir,
    HSM_CA_PROFILES_DIR: path.join(REPO, "profiles"),
    HSM_CA_HTTPS_HOST: "127.0.0.1",
    HSM_CA_HTTPS_PORT: "0",
    HSM_CA_HTTP_HOST: "127.0.0.1",
    HSM_CA_HTTP_PORT: "0",
    HSM_CA_HSM_SESSIONS: "4",
    ...(db ? { DATABASE_URL: db.url } : {}),
    ...extraEnv,
  };
  const config = loadConfig(env);
  // A fresh data directory of our own on PGlite: start from an initialised, migrated copy (see pglite-template.ts).
  if (!config.databaseUrl && !extraEnv.HSM_CA_DATA_DIR) await copyMigratedPglite(dataDir);
  const log = logSink
    ? createLogger("debug", { write: (line: string) => void logSink(line) } as unknown as Parameters<typeof createLogger>[1])
    : createLogger("silent");
  const service = await startServiceWithCli(config, log);
  const fetchText = async (p: string) => (await fetch(service.httpUrl + p)).text();
  const rootPem = await fetchText("/ca/root.pem");
  const chainPem = await fetchText("/ca/chain.pem");
  return {
    service,
    config,
    env,
    api: apiClient(service.httpsUrl, rootPem),
    rootPem,
    chainPem,
    async token(role, ...profiles) {
      const args = ["token", "create", "--role", role, ...profiles.flatMap((p) => ["--profile", p])];
      const r = await runCliInProcess(args, env);
      if (r.code !== 0) throw new Error(`hsm-ca token create failed: ${r.stderr}`);
      return r.stdout.trim();
    },
    async stop() {
      await service.close();
      await db?.drop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
