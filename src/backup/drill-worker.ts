// @peculiar/x509 needs the Reflect metadata polyfill before it loads.
import "reflect-metadata";
import crypto from "node:crypto";
import * as x509 from "@peculiar/x509";
import { loadConfig } from "../config.ts";
import { pkcs11Reason } from "../hsm/errors.ts";
import { Hsm } from "../hsm/hsm.ts";
import { isCaKeyAlgorithm, KEY_ALGORITHM_SPECS } from "../hsm/key-algorithms.ts";
import { EAB_WRAPPING_KEY_LABEL, EabKeyUnusable, openEabHmacKey, SEALED_PREFIX } from "../acme/eab-keys.ts";
import { eabKeysStartingWith, type EabKeyRow } from "../store/acme-eab-keys.ts";
import { openStore } from "../store/database.ts";
import { listSigningKeys, type SigningKeyRow } from "../store/signing-keys.ts";
import { DRILL_LINE_PREFIX, type DrillMode, type KeyCheck } from "./drill.ts";

/**
 * The restore drill's child process: `drill-worker.ts <scratch dir> <mode>`.
 * A process of its own because SoftHSM2 reads its configuration once per
 * process, and the parent may already use (or forward to) another token.
 *
 * It opens the tables restored into <scratch>/pglite, and for every key they
 * name asks the HSM to sign a fresh challenge and verifies the signature with
 * Node's own WebCrypto against the public key in the stored certificate:
 * proof that the key is there, usable, and the one the certificate names.
 * The EAB HMAC keys' wrapping key is checked by opening the sealed keys.
 * Prints one line per key, prefixed, as JSON.
 *
 * mode: "restored" (the token restored into the scratch directory),
 * "configured" (a hook backup: the keys are checked on the configured HSM),
 * "none" (the archive holds no HSM part: every key fails).
 */
async function main(scratch: string, mode: DrillMode): Promise<void> {
  const config = loadConfig({ ...process.env, HSM_CA_DATA_DIR: scratch });
  const store = await openStore({ dataDir: scratch });
  let hsm: Hsm | undefined;
  try {
    const keys = await listSigningKeys(store.db);
    let unavailable: string | undefined;
    if (mode === "none") unavailable = "the archive holds no HSM backup";
    else {
      try {
        hsm = Hsm.open(config.hsm, config.dataDir);
      } catch (err) {
        unavailable = `the ${mode === "restored" ? "restored" : "configured"} token cannot be used: ${pkcs11Reason(err)}`;
      }
    }
    const checks: KeyCheck[] = [];
    for (const key of keys) checks.push(await checkKey(key, hsm, unavailable));
    const eab = await checkEabWrappingKey(await eabKeysStartingWith(store.db, SEALED_PREFIX), hsm, unavailable);
    if (eab) checks.push(eab);
    for (const check of checks) process.stdout.write(DRILL_LINE_PREFIX + JSON.stringify(check) + "\n");
  } finally {
    hsm?.close();
    await store.close();
  }
}

async function checkKey(row: SigningKeyRow, hsm: Hsm | undefined, unavailable: string | undefined): Promise<KeyCheck> {
  const base = { role: row.role, subject: row.subject, keyLabel: row.keyLabel, keyAlgorithm: row.keyAlgorithm, status: row.status };
  let certificate: x509.X509Certificate;
  try {
    certificate = new x509.X509Certificate(row.certificatePem);
  } catch {
    return { ...base, result: "FAIL", reason: "the stored certificate cannot be parsed" };
  }
  if (!base.subject) base.subject = certificate.subject;
  if (row.keyDestroyedAt) return { ...base, result: "SKIP", reason: `key destroyed on purpose at ${row.keyDestroyedAt.toISOString()}` };
  if (unavailable || !hsm) return { ...base, result: "FAIL", reason: unavailable ?? "no HSM" };
  const algorithm = row.keyAlgorithm;
  if (!isCaKeyAlgorithm(algorithm)) return { ...base, result: "FAIL", reason: `unknown key algorithm "${algorithm}"` };
  try {
    if (!hsm.hasKey(row.keyLabel)) return { ...base, result: "FAIL", reason: "no private key with this label on the token" };
    const challenge = Buffer.concat([Buffer.from("hsm-ca restore drill\n"), crypto.randomBytes(32)]);
    const signer = hsm.signer(row.keyLabel, algorithm);
    const signature = await signer.use((key, p11) => p11.subtle.sign(signer.signingAlgorithm, key, challenge));
    // Verified outside the HSM, with the public key from the certificate, not the token's.
    const spec = KEY_ALGORITHM_SPECS[algorithm];
    let publicKey: CryptoKey;
    try {
      publicKey = await crypto.webcrypto.subtle.importKey("spki", certificate.publicKey.rawData, spec.keyParams, false, ["verify"]);
    } catch {
      return { ...base, result: "FAIL", reason: `the certificate's public key is not a ${algorithm} key` };
    }
    const ok = await crypto.webcrypto.subtle.verify(spec.signParams, publicKey, signature, challenge);
    return ok ? { ...base, result: "PASS" } : { ...base, result: "FAIL", reason: "the signature does not verify against the certificate's public key" };
  } catch (err) {
    return { ...base, result: "FAIL", reason: `cannot sign: ${pkcs11Reason(err)}` };
  }
}

/**
 * The EAB HMAC keys are sealed under a secret key on the token: the restored
 * token must open every sealed one, or no account can be bound with them.
 * No check when the database holds none.
 */
async function checkEabWrappingKey(rows: EabKeyRow[], hsm: Hsm | undefined, unavailable: string | undefined): Promise<KeyCheck | undefined> {
  if (rows.length === 0) return undefined;
  const base = { role: "eab" as const, subject: `${rows.length} sealed EAB HMAC keys`, keyLabel: EAB_WRAPPING_KEY_LABEL, keyAlgorithm: "aes-256-gcm", status: "active" };
  if (unavailable || !hsm) return { ...base, result: "FAIL", reason: unavailable ?? "no HSM" };
  const failed: string[] = [];
  for (const row of rows) {
    try {
      await openEabHmacKey(hsm, row);
    } catch (err) {
      if (!(err instanceof EabKeyUnusable)) return { ...base, result: "FAIL", reason: `cannot decrypt: ${pkcs11Reason(err)}` };
      failed.push(row.kid);
    }
  }
  if (failed.length === 0) return { ...base, result: "PASS" };
  return { ...base, result: "FAIL", reason: `${failed.length} do not open on the restored token (first: ${failed[0]})` };
}

const [scratch, mode] = process.argv.slice(2);
if (!scratch || (mode !== "restored" && mode !== "configured" && mode !== "none")) {
  process.stderr.write("usage: drill-worker.ts <scratch dir> restored|configured|none\n");
  process.exit(2);
}
main(scratch, mode).then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`${err.message.split("\n")[0]}\n`);
    process.exit(1);
  },
);
