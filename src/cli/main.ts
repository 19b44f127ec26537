// @peculiar/x509 needs the Reflect metadata polyfill before it loads.
import "reflect-metadata";
import { loadConfig, type Config } from "../config.ts";
import { sendToRunningService } from "../control/control-socket.ts";
import { Hsm } from "../hsm/hsm.ts";
import { startService } from "../service.ts";
import { RevocationUrls } from "../revocation/urls.ts";
import { openStore, type Store } from "../store/database.ts";
import type { CommandEnv } from "./command-env.ts";
import { oneLine, runCommand } from "./run-command.ts";

/**
 * The hsm-ca executable. `serve` runs the service; every other command runs
 * here, or, on the embedded database while the service is up, inside the
 * service through its control socket (PGlite is single-process).
 */
async function main(argv: string[]): Promise<number> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    process.stderr.write(`hsm-ca: ${oneLine(err)}\n`);
    return 2;
  }
  if (argv[0] === "serve") return serveCommand(config);

  // backup and restore use this process's passphrase and files (a drill, its own SoftHSM2 child): never forwarded.
  if (!config.databaseUrl && argv[0] && !["help", "backup", "restore"].includes(argv[0])) {
    const remote = await sendToRunningService(config.dataDir, argv).catch((err: Error) => {
      process.stderr.write(`hsm-ca: ${err.message}\n`);
      return { code: 1, stdout: "", stderr: "" };
    });
    if (remote) {
      process.stdout.write(remote.stdout);
      process.stderr.write(remote.stderr);
      return remote.code;
    }
  }
  const local = localEnv(config);
  try {
    return await runCommand(argv, local.env);
  } finally {
    await local.close();
  }
}

function localEnv(config: Config): { env: CommandEnv; close(): Promise<void> } {
  let store: Promise<Store> | undefined;
  let hsm: Hsm | undefined;
  return {
    env: {
      config,
      store: () => (store ??= openStore(config)),
      hsm: () => (hsm ??= Hsm.open(config.hsm, config.dataDir)),
      out: (t) => process.stdout.write(t + "\n"),
      err: (t) => process.stderr.write(t + "\n"),
      revocationUrls: () => new RevocationUrls(config.publicHttpUrl ?? `http://${config.http.host}:${config.http.port}`),
      hierarchyChanged: async () => {},
    },
    close: async () => {
      if (store) await (await store.catch(() => undefined))?.close();
      hsm?.close();
    },
  };
}

async function serveCommand(config: Config): Promise<number> {
  let service;
  try {
    service = await startService(config, undefined, (text) => process.stdout.write(text + "\n\n"));
  } catch (err) {
    process.stderr.write(`hsm-ca serve: ${oneLine(err)}\n`);
    return 1;
  }
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  await service.close();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`hsm-ca: ${oneLine(err)}\n`);
    process.exit(1);
  },
);
