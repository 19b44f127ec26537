import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Config } from "../config.ts";
import { embeddedTokenPaths } from "../hsm/embedded-softhsm.ts";
import type { ArchivedFile, HsmPart } from "./archive.ts";
import { PASSPHRASE_VARIABLES } from "./passphrase.ts";
import { BackupError } from "./errors.ts";

/**
 * The HSM's own share of a backup. The embedded SoftHSM2 token is files:
 * its object files (private keys stay encrypted under the token's keys),
 * the PINs that open it and the settings of softhsm2.conf. Any other HSM
 * has its own backup procedure (key wrapping, cloning, a vendor tool), so
 * hsm-ca runs the operator's HSM_CA_BACKUP_HOOK and carries its files.
 */
export class HsmPartError extends BackupError {}

/** A hook may talk to a slow HSM or a network service, but not forever. */
const HOOK_TIMEOUT_MS = 15 * 60_000;
const PIN_FILES = ["user.pin", "so.pin"];

export async function collectHsmPart(config: Config, hook: string | undefined, env: NodeJS.ProcessEnv): Promise<HsmPart> {
  if (config.hsm.embedded) return collectEmbedded(config);
  if (!hook) {
    return { kind: "none", reason: `HSM_CA_PKCS11_MODULE is set and HSM_CA_BACKUP_HOOK is not; ${keyBackupAdvice(config.hsm.module)}` };
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hsm-ca-hook-"));
  try {
    await runHook(hook, "backup", dir, env);
    return { kind: "hook", tokenLabel: config.hsm.tokenLabel, files: readTree(dir, dir) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * What backing up the CA keys means on this module. hsm-ca makes every key
 * sensitive and never extractable, so no module lets hsm-ca wrap one out
 * (C_WrapKey): the keys' backup is the HSM's own (docs/hsm-compatibility.md).
 */
export function keyBackupAdvice(module: string): string {
  const name = path.basename(module);
  if (name.includes("tpm2_pkcs11")) {
    return (
      "tpm2-pkcs11 cannot back up keys (C_WrapKey is not supported; its keys are sealed to the TPM): back up its store " +
      "(TPM2_PKCS11_STORE) together with the TPM's own state (swtpm: its --tpmstate directory) from HSM_CA_BACKUP_HOOK; " +
      "a hardware TPM cannot be copied, so keep a second issuing CA on another TPM instead"
    );
  }
  if (name.includes("opencryptoki")) {
    return (
      "opencryptoki will not wrap hsm-ca's never-extractable keys (CKR_KEY_UNEXTRACTABLE): back up the token directory " +
      "(/var/lib/opencryptoki/<token>, encrypted under the token's master keys) from HSM_CA_BACKUP_HOOK"
    );
  }
  if (name.includes("softhsm2")) {
    return "back up the SoftHSM2 token directory (directories.tokendir in SOFTHSM2_CONF) from HSM_CA_BACKUP_HOOK";
  }
  return "the CA keys are never extractable, so hsm-ca cannot export them: back them up with the HSM's own means (cloning, a backup HSM, the vendor's tool) from HSM_CA_BACKUP_HOOK";
}

function collectEmbedded(config: Config): HsmPart {
  const p = embeddedTokenPaths(config.dataDir);
  if (!fs.existsSync(p.tokensDir)) throw new HsmPartError(`there is no embedded token in ${p.dir}: nothing to back up`);
  const settings = fs
    .readFileSync(p.confPath, "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !/^directories\.tokendir\s*=/.test(l));
  return {
    kind: "softhsm2",
    tokenLabel: config.hsm.tokenLabel,
    rootTokenLabel: config.hsm.rootToken?.label,
    settings,
    files: [...stableSnapshot(p.tokensDir, p.dir), ...PIN_FILES.map((f) => fileEntry(p.dir, path.join(p.dir, f)))],
  };
}

/**
 * The running service may write a token file (a new OCSP responder key)
 * while we read: read until two passes agree, so that no object file is
 * taken half-written.
 */
function stableSnapshot(dir: string, base: string): ArchivedFile[] {
  let previous = readTree(dir, base);
  for (let attempt = 0; attempt < 10; attempt++) {
    const current = readTree(dir, base);
    if (JSON.stringify(current) === JSON.stringify(previous)) return current;
    previous = current;
  }
  throw new HsmPartError(`the token files in ${dir} kept changing while they were read; try again`);
}

/** Regular files under dir, sorted, paths relative to base. Links are refused: they could lead out of the token. */
function readTree(dir: string, base: string): ArchivedFile[] {
  const files: ArchivedFile[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    const full = path.join(entry.parentPath, entry.name);
    if (entry.isDirectory()) continue;
    if (!entry.isFile()) throw new HsmPartError(`${full} is not a regular file`);
    files.push(fileEntry(base, full));
  }
  return files.sort((a, b) => a.path.localeCompare(b.path));
}

function fileEntry(base: string, full: string): ArchivedFile {
  return { path: path.relative(base, full).split(path.sep).join("/"), data: fs.readFileSync(full).toString("base64") };
}

/**
 * Writes the embedded token into hsmDir (a staging directory), with a
 * softhsm2.conf that points at finalHsmDir, where it will be renamed to.
 * Only tokens/... and the PIN files are accepted from the archive.
 */
export function writeEmbeddedToken(part: Extract<HsmPart, { kind: "softhsm2" }>, hsmDir: string, finalHsmDir: string): void {
  fs.mkdirSync(path.join(hsmDir, "tokens"), { recursive: true, mode: 0o700 });
  for (const file of part.files) {
    const relative = safeRelative(file.path);
    if (!relative.startsWith("tokens/") && !PIN_FILES.includes(relative)) throw new HsmPartError(`the archive holds an unexpected HSM file "${file.path}"`);
    writePrivateFile(hsmDir, relative, file.data);
  }
  const conf = [`directories.tokendir = ${path.join(finalHsmDir, "tokens")}`, ...part.settings, ""].join("\n");
  fs.writeFileSync(path.join(hsmDir, "softhsm2.conf"), conf, { mode: 0o600 });
}

/** Hands the archived hook files back to HSM_CA_BACKUP_HOOK: `<hook> restore <dir>`. */
export async function restoreWithHook(part: Extract<HsmPart, { kind: "hook" }>, hook: string, env: NodeJS.ProcessEnv): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hsm-ca-hook-"));
  try {
    for (const file of part.files) writePrivateFile(dir, safeRelative(file.path), file.data);
    await runHook(hook, "restore", dir, env);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function writePrivateFile(root: string, relative: string, base64: string): void {
  const target = path.join(root, relative);
  fs.mkdirSync(path.dirname(target), { recursive: true, mode: 0o700 });
  fs.writeFileSync(target, Buffer.from(base64, "base64"), { mode: 0o600, flag: "wx" });
}

/** Archive paths are relative and stay below where they are written. */
function safeRelative(p: string): string {
  const normal = path.posix.normalize(p);
  if (path.posix.isAbsolute(normal) || normal === ".." || normal.startsWith("../") || normal.includes("\0")) {
    throw new HsmPartError(`the archive holds an unsafe path "${p}"`);
  }
  return normal;
}

/**
 * Runs `<hook> backup|restore <dir>` without a shell. The hook gets the
 * environment (it may need the HSM's own credentials) but not the backup
 * passphrase, which is hsm-ca's to use.
 */
function runHook(hook: string, action: "backup" | "restore", dir: string, env: NodeJS.ProcessEnv): Promise<void> {
  const hookEnv = { ...env };
  for (const name of PASSPHRASE_VARIABLES) delete hookEnv[name];
  return new Promise((resolve, reject) => {
    const child = spawn(hook, [action, dir], { env: hookEnv, stdio: ["ignore", "ignore", "pipe"], timeout: HOOK_TIMEOUT_MS });
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr = (stderr + d).slice(-4096)));
    child.on("error", (err: NodeJS.ErrnoException) => reject(new HsmPartError(`cannot run HSM_CA_BACKUP_HOOK ${hook}: ${err.code ?? err.message}`)));
    child.on("close", (code, signal) => {
      if (code === 0) return resolve();
      const last = stderr.trim().split("\n").pop()?.slice(0, 200);
      reject(new HsmPartError(`HSM_CA_BACKUP_HOOK ${action} failed (${signal ?? `exit ${code}`})${last ? `: ${last}` : ""}`));
    });
  });
}
