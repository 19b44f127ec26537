import { parseArgs } from "node:util";
import { transcriptDetails } from "../../ceremony/transcript-details.ts";
import { formatTranscript, initHierarchy } from "../../ceremony/init-hierarchy.ts";
import { isCaKeyAlgorithm, CA_KEY_ALGORITHMS } from "../../hsm/key-algorithms.ts";
import { listCas } from "../../store/cas.ts";
import { CliError, type CommandEnv } from "../command-env.ts";
import { initBelowExternalRoot } from "./external-init.ts";
import { KEY_CHOICE_OPTIONS, keyChoiceOf } from "./external-ceremony.ts";

export const initUsage = `hsm-ca init [--root-subject DN] [--root-algorithm ALG] [--root-validity-days N]
            [--intermediate-subject DN] [--intermediate-algorithm ALG] [--intermediate-validity-days N]
  Creates the root and issuing intermediate CA keys in the HSM and their certificates,
  if they do not exist yet, and prints the ceremony transcript. ALG: ${CA_KEY_ALGORITHMS.join(", ")}
hsm-ca init --external-root ROOT.pem [--csr-out FILE] [--intermediate-subject DN] [--intermediate-algorithm ALG]
            [--key-label L | --key-id HEX [--allow-weak-key]]
  Below a root hsm-ca does not hold: stores that root (a self-signed CA certificate), makes the
  issuing intermediate's key in the HSM and writes its CSR for the root to sign; then
  hsm-ca ceremony import-intermediate --cert FILE activates it. See docs/external-root.md.`;

export async function initCommand(args: string[], env: CommandEnv): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      "root-subject": { type: "string" },
      "root-algorithm": { type: "string" },
      "root-validity-days": { type: "string" },
      "intermediate-subject": { type: "string" },
      "intermediate-algorithm": { type: "string" },
      "intermediate-validity-days": { type: "string" },
      "external-root-pem": { type: "string" },
      ...KEY_CHOICE_OPTIONS,
    },
    strict: true,
  });
  const h = { ...env.config.hierarchy };
  if (values["root-subject"]) h.rootSubject = values["root-subject"];
  if (values["intermediate-subject"]) h.intermediateSubject = values["intermediate-subject"];
  if (values["root-algorithm"]) h.rootAlgorithm = algorithm(values["root-algorithm"], "--root-algorithm");
  if (values["intermediate-algorithm"]) h.intermediateAlgorithm = algorithm(values["intermediate-algorithm"], "--intermediate-algorithm");
  if (values["root-validity-days"]) h.rootValidityDays = days(values["root-validity-days"], "--root-validity-days");
  if (values["intermediate-validity-days"]) {
    h.intermediateValidityDays = days(values["intermediate-validity-days"], "--intermediate-validity-days");
  }
  if (values["external-root-pem"] !== undefined) {
    const own = ["root-subject", "root-algorithm", "root-validity-days", "intermediate-validity-days"].filter((o) => values[o as keyof typeof values] !== undefined);
    if (own.length) throw new CliError(`--${own[0]} does not go with --external-root: the external root's CA decides that`);
    return initBelowExternalRoot(env, { rootPem: values["external-root-pem"], subject: h.intermediateSubject, algorithm: h.intermediateAlgorithm, keyChoice: keyChoiceOf(values) });
  }
  if (keyChoiceOf(values)) throw new CliError("--key-label / --key-id go with --external-root here");
  const store = await env.store();
  const transcript = await initHierarchy(env.hsm(), store.db, h, env.revocationUrls());
  if (!transcript) {
    env.out("The CA hierarchy already exists; nothing was created. Existing CAs:");
    for (const ca of await listCas(store.db)) {
      env.out(`  ${ca.role.padEnd(12)} ${ca.status.padEnd(7)} ${ca.subject}  key ${ca.keyLabel}  sha256 ${ca.fingerprintSha256}`);
    }
    return 0;
  }
  env.audit?.record({ kind: "admin.init", actor: "cli", details: transcriptDetails(transcript) });
  await env.hierarchyChanged();
  env.out(formatTranscript(transcript));
  env.out("\nThe transcript is stored in the database (ceremonies table).");
  return 0;
}

function algorithm(value: string, flag: string) {
  if (!isCaKeyAlgorithm(value)) throw new CliError(`${flag} must be one of ${CA_KEY_ALGORITHMS.join(", ")}, not "${value}"`);
  return value;
}

function days(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new CliError(`${flag} must be a positive number of days, not "${value}"`);
  return n;
}
