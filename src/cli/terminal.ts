import fs from "node:fs";
import { withActor } from "../audit/actor.ts";
import { AuditLog, keyUseRecorder } from "../audit/audit-log.ts";
import { loadConfig, type Config } from "../config.ts";
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

/** What a run of hsm-ca reads and writes besides its arguments: the process's own, or a test's. */
export interface CliIo {
  env: NodeJS.ProcessEnv;
  cwd: string;
  stdout(text: string): void;
  stderr(text: string): void;
}

const processIo: CliIo = {
  env: process.env,
  cwd: process.cwd(),
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
};

/**
/**
 * A command typed at the terminal (every one but `serve`): it runs in this
 * process, or, on the embedded database while the service is up, inside the
 * service through its control socket (PGlite is single-process; see
 * ./in-service.ts). Tests pass their own io to run a command without
 * starting a process (runCommandLine).
 */
export async function runFromTerminal(argv: string[], config: Config, io: CliIo = processIo): Promise<number> {
  // The API token, --csr FILE, --out FILE (and the ceremonies' certificate files and --csr-out) belong to this process, wherever the command runs.
  let inputs: LocalizedArgs;
  try {
    inputs = localizeArgs(argv, io.env, io.cwd);
  } catch (err) {
    io.stderr(`hsm-ca ${argv[0]}: ${oneLine(err)}\n`);
    return 2;
  }
  argv = inputs.argv;

  // backup and restore use this process's passphrase and files (a drill, its own SoftHSM2 child): never forwarded.
  if (!config.databaseUrl && argv[0] && !["help", "backup", "restore"].includes(argv[0])) {
    const remote = await sendToRunningService(config.dataDir, argv).catch((err: Error) => {
      io.stderr(`hsm-ca: ${err.message}\n`);
      return { code: 1, stdout: "", stderr: "" };
    });
    if (remote) return emit(withCsrOut(remote, inputs.csrOutFile, io), inputs.outFile, io);
  }
  const local = localEnv(config, io);
  const captured: string[] = [];
  if (inputs.outFile || inputs.csrOutFile) local.env.out = (t) => captured.push(t);
  let code: number;
  try {
    code = await withActor("cli", () => runCommand(argv, local.env));
  } finally {
    await local.close();
  }
  if (!inputs.outFile && !inputs.csrOutFile) return code;
  return emit(withCsrOut({ code, stdout: captured.length ? captured.join("\n") + "\n" : "", stderr: "" }, inputs.csrOutFile, io), inputs.outFile, io);
}

/** With --csr-out FILE: the CSR block of a successful command's output goes to that file, the rest to the terminal. */
function withCsrOut(r: CommandResult, csrOutFile: string | undefined, io: CliIo): CommandResult {
  const begin = r.stdout.indexOf("-----BEGIN CERTIFICATE REQUEST-----");
  const endMark = "-----END CERTIFICATE REQUEST-----";
  const end = r.stdout.indexOf(endMark, begin);
  if (!csrOutFile || r.code !== 0 || begin < 0 || end < 0) return r;
  try {
    fs.writeFileSync(csrOutFile, r.stdout.slice(begin, end + endMark.length) + "\n", { mode: 0o644 });
  } catch (err) {
    io.stderr(`hsm-ca: cannot write ${csrOutFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`);
    return { ...r, code: 1 };
  }
  const rest = r.stdout.slice(0, begin) + `(the CSR is in ${csrOutFile})` + r.stdout.slice(end + endMark.length);
  return { ...r, stdout: rest, stderr: r.stderr + `Wrote ${csrOutFile}\n` };
}

/** A command's output; with --out FILE, the stdout of a command that succeeded goes to that file instead. */
function emit(r: CommandResult, outFile: string | undefined, io: CliIo): number {
  if (outFile && r.code === 0 && r.stdout) {
    try {
      fs.writeFileSync(outFile, r.stdout, { mode: 0o644 });
    } catch (err) {
      io.stderr(r.stderr + `hsm-ca: cannot write ${outFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`);
      return 1;
    }
    io.stderr(r.stderr + `Wrote ${outFile}\n`);
    return 0;
  }
  io.stdout(r.stdout);
  io.stderr(r.stderr);
  return r.code;
}

function localEnv(config: Config, io: CliIo): { env: CommandEnv; close(): Promise<void> } {
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
    if (repairs.length) io.stderr(`hsm-ca: removed other users' permissions under the data directory: ${describeRepairs(repairs)}\n`);
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
      out: (t) => io.stdout(t + "\n"),
      err: (t) => io.stderr(t + "\n"),
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

/**
 * A whole command line as the executable runs it (settings from io.env,
 * one-line errors, the exit code), but in this process: for tests.
 */
export async function runCommandLine(argv: string[], io: CliIo): Promise<number> {
  let config: Config;
  try {
    config = loadConfig(io.env);
  } catch (err) {
    io.stderr(`hsm-ca: ${oneLine(err)}\n`);
    return 2;
  }
  try {
    return await runFromTerminal(argv, config, io);
  } catch (err) {
    io.stderr(`hsm-ca: ${oneLine(err)}\n`);
    return 1;
  }
}
