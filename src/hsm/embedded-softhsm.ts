import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import * as graphene from "graphene-pk11";
import { HsmUnavailableError } from "./errors.ts";
import { findFreeSlot, findSlotByTokenLabel } from "./module.ts";

/**
 * The embedded default: a SoftHSM2 token that hsm-ca keeps under its data
 * directory, with generated PINs in 0600 files. Production points
 * HSM_CA_PKCS11_MODULE at its own HSM and supplies its own PIN instead.
 */
export interface EmbeddedToken {
  confPath: string;
  userPinFile: string;
  /** True when this call generated the PINs (first start). */
  pinsGenerated: boolean;
}

export function embeddedTokenPaths(dataDir: string) {
  const dir = path.join(dataDir, "hsm");
  return {
    dir,
    tokensDir: path.join(dir, "tokens"),
    confPath: path.join(dir, "softhsm2.conf"),
    userPinFile: path.join(dir, "user.pin"),
    soPinFile: path.join(dir, "so.pin"),
  };
}

function writeSecretOnce(file: string): boolean {
  try {
    fs.writeFileSync(file, crypto.randomBytes(18).toString("base64url") + "\n", { mode: 0o600, flag: "wx" });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  }
}

/**
 * Writes the SoftHSM2 config and PIN files if missing and points this
 * process at them. Must run before the module is loaded: SoftHSM2 reads
 * SOFTHSM2_CONF in C_Initialize.
 */
export function prepareEmbeddedToken(dataDir: string): EmbeddedToken {
  const p = embeddedTokenPaths(dataDir);
  fs.mkdirSync(p.tokensDir, { recursive: true, mode: 0o700 });
  if (!fs.existsSync(p.confPath)) {
    fs.writeFileSync(
      p.confPath,
      [
        `directories.tokendir = ${p.tokensDir}`,
        "objectstore.backend = file",
        "log.level = ERROR",
        "slots.removable = false",
        "",
      ].join("\n"),
      { mode: 0o600 },
    );
  }
  const userCreated = writeSecretOnce(p.userPinFile);
  const soCreated = writeSecretOnce(p.soPinFile);
  const current = process.env.SOFTHSM2_CONF;
  if (current && current !== p.confPath && globalThis.__hsmCaSofthsmLoaded) {
    throw new HsmUnavailableError("this process already uses another SoftHSM2 configuration");
  }
  process.env.SOFTHSM2_CONF = p.confPath;
  globalThis.__hsmCaSofthsmLoaded = true;
  return { confPath: p.confPath, userPinFile: p.userPinFile, pinsGenerated: userCreated || soCreated };
}

/** Initialises the token on SoftHSM2's free slot when no token has the label yet. */
export function ensureEmbeddedTokenInitialised(mod: graphene.Module, dataDir: string, label: string): boolean {
  if (findSlotByTokenLabel(mod, label)) return false;
  const p = embeddedTokenPaths(dataDir);
  const soPin = fs.readFileSync(p.soPinFile, "utf8").trim();
  const userPin = fs.readFileSync(p.userPinFile, "utf8").trim();
  const free = findFreeSlot(mod);
  if (!free) throw new HsmUnavailableError("SoftHSM2 offers no free slot to create the embedded token");
  // graphene's Slot.initToken mishandles pkcs11js's return value: call C_InitToken directly.
  mod.lib.C_InitToken(free.handle, soPin, label);
  const slot = findSlotByTokenLabel(mod, label);
  if (!slot) throw new HsmUnavailableError(`token ${label} was initialised but cannot be found`);
  const session = slot.open(graphene.SessionFlag.SERIAL_SESSION | graphene.SessionFlag.RW_SESSION);
  try {
    session.login(soPin, graphene.UserType.SO);
    session.initPin(userPin);
    session.logout();
  } finally {
    session.close();
  }
  return true;
}

declare global {
  // eslint-disable-next-line no-var
  var __hsmCaSofthsmLoaded: boolean | undefined;
}
