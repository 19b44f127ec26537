import fs from "node:fs";
import { withActor } from "../audit/actor.ts";
import { AuditLog, keyUseRecorder } from "../audit/audit-log.ts";
import type { Config } from "../config.ts";
import { sendToRunningService, type CommandResult } from "../control/control-socket.ts";
import { Hsm } from "../hsm/hsm.ts";
import { createLogger } from "../logger.ts";
import { createPrivately, describeRepairs, makeDataDirPrivate } from "../private-data-dir.ts";
import { RevocationUrls } from "../revocation/urls.ts";
import { openStore, type Store } from "../store/database.ts";
import type { CommandEnv } from "./command-env.ts";
import { refuseEmbeddedBesidePostgres } from "./database-guard.ts";
import { localizeArgs, type LocalizedArgs } from "./local-inputs.ts";
import { oneLine, runCommand } from "./run-command.ts";

/**
 * A command typed at the terminal (every one but `serve`): it runs in this
 * process, or, on the embedded database while the service is up, inside the
 * service through its control socket (PGlite is single-process; see
 * ./in-service.ts).
 */
export async function runFromTerminal(argv: string[], config: Config): Promise<number> {
  // The API token, --csr FILE and --out FILE belong to this process, wherever the command runs.
  let inputs: LocalizedArgs;
  try {
    inputs = localizeArgs(argv, process.env, process.cwd());
  } catch (err) {
    process.stderr.write(`hsm-ca ${argv[0]}: ${oneLine(err)}\n`);
    return 2;
  }
  argv = inputs.argv;

  // backup and restore use this process's passphrase and files (a drill, its own SoftHSM2 child): never forwarded.
  if (!config.databaseUrl && argv[0] && !["help", "backup", "restore"].includes(argv[0])) {
    const remote = await sendToRunningService(config.dataDir, argv).catch((err: Error) => {
      process.stderr.write(`hsm-ca: ${err.message}\n`);
      return { code: 1, stdout: "", stderr: "" };
    });
    if (remote) return emit(remote, inputs.outFile);
  }
  const local = localEnv(config);
  const captured: string[] = [];
  if (inputs.outFile) local.env.out = (t) => captured.push(t);
  let code: number;
  try {
    code = await withActor("cli", () => runCommand(argv, local.env));
  } finally {
    await local.close();
  }
  if (!inputs.outFile) return code;
  return emit({ code, stdout: captured.length ? captured.join("\n") + "\n" : "", stderr: "" }, inputs.outFile);
}

/** A command's output; with --out FILE, the stdout of a command that succeeded goes to that file instead. */
function emit(r: CommandResult, outFile: string | undefined): number {
  if (outFile && r.code === 0 && r.stdout) {
    try {
      fs.writeFileSync(outFile, r.stdout, { mode: 0o644 });
    } catch (err) {
      process.stderr.write(r.stderr + `hsm-ca: cannot write ${outFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`);
      return 1;
    }
    process.stderr.write(r.stderr + `Wrote ${outFile}\n`);
    return 0;
  }
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  return r.code;
}

function localEnv(config: Config): { env: CommandEnv; close(): Promise<void> } {
  let store: Promise<Store> | undefined;
  let hsm: Hsm | undefined;
  // Whatever this command creates under the data directory (PGlite's WAL, a restored token) is private;
  // the umask comes back before --out FILE is written.
  const restoreUmask = createPrivately();
  let checked = false;
  const privateDataDir = () => {
    if (checked) return;
    checked = true;
    const repairs = makeDataDirPrivate(config.dataDir);
    if (repairs.length) process.stderr.write(`hsm-ca: removed other users' permissions under the data directory: ${describeRepairs(repairs)}\n`);
  };
  const openStoreOnce = () =>
    (store ??= Promise.resolve().then(() => {
      refuseEmbeddedBesidePostgres(config);
      privateDataDir();
      return openStore(config);
    }));
  // The command's admin actions and key uses; the database is opened for them only if there are any.
  const audit = new AuditLog({ db: async () => (await openStoreOnce()).db, log: createLogger(config.logLevel) });
  return {
    env: {
      config,
      store: openStoreOnce,
      hsm: () => {
        if (!hsm) {
          privateDataDir();
          hsm = Hsm.open(config.hsm, config.dataDir);
          hsm.onKeyUse(keyUseRecorder(audit, hsm));
        }
        return hsm;
      },
      out: (t) => process.stdout.write(t + "\n"),
      err: (t) => process.stderr.write(t + "\n"),
      revocationUrls: () => new RevocationUrls(config.publicHttpUrl ?? `http://${config.http.host}:${config.http.port}`),
      hierarchyChanged: async () => {},
      audit,
    },
    close: async () => {
      await audit.stop();
      if (store) await (await store.catch(() => undefined))?.close();
      hsm?.close();
      restoreUmask();
    },
  };
}
