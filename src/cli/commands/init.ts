import { parseArgs } from "node:util";
import { transcriptDetails } from "../../ceremony/transcript-details.ts";
import { formatTranscript, initHierarchy } from "../../ceremony/init-hierarchy.ts";
import { isCaKeyAlgorithm, CA_KEY_ALGORITHMS } from "../../hsm/key-algorithms.ts";
import { listCas } from "../../store/cas.ts";
import { CliError, type CommandEnv } from "../command-env.ts";
import { initBelowExternalRoot } from "./external-init.ts";
import { ALLOW_WEAK_KEY_OPTION, keyChoiceFrom, keyChoiceOptions, keyChoiceUsage, requireKeyForAllowWeak } from "../key-choice.ts";

export const initUsage = `hsm-ca init [--root-subject DN] [--root-algorithm ALG] [--root-validity-days N] ${keyChoiceUsage("root-")}
            [--intermediate-subject DN] [--intermediate-algorithm ALG] [--intermediate-validity-days N]
            ${keyChoiceUsage("intermediate-")} [--allow-weak-key]
  Creates the root and issuing intermediate CA keys in the HSM and their certificates,
  if they do not exist yet, and prints the ceremony transcript. ALG: ${CA_KEY_ALGORITHMS.join(", ")}
  --*-key-label/--*-key-id adopt a key already on the token (a vendor ceremony) instead of making
  one: it must be private, sensitive and never extractable unless --allow-weak-key (recorded);
  its algorithm is the key's own. See docs/adopting-keys.md.
hsm-ca init --external-root ROOT.pem [--csr-out FILE] [--intermediate-subject DN] [--intermediate-algorithm ALG]
            ${keyChoiceUsage("intermediate-")} [--allow-weak-key]
  Below a root hsm-ca does not hold: stores that root (a self-signed CA certificate), makes the
  issuing intermediate's key in the HSM (or adopts one) and writes its CSR for the root to sign;
  then hsm-ca ceremony import-intermediate --cert FILE activates it. See docs/external-root.md.`;

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
      ...keyChoiceOptions("root-", "intermediate-"),
      ...ALLOW_WEAK_KEY_OPTION,
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
  // An adopted key brings its own algorithm: an algorithm option beside it must agree with it.
  const root = keyChoiceFrom(values, "root-");
  const intermediate = keyChoiceFrom(values, "intermediate-");
  requireKeyForAllowWeak(values, [root, intermediate], "--root-key-label/--root-key-id or --intermediate-key-label/--intermediate-key-id");
  if (root && values["root-algorithm"]) root.algorithm = h.rootAlgorithm;
  if (intermediate && values["intermediate-algorithm"]) intermediate.algorithm = h.intermediateAlgorithm;
  if (values["external-root-pem"] !== undefined) {
    const own = ["root-subject", "root-algorithm", "root-validity-days", "intermediate-validity-days", "root-key-label", "root-key-id"].filter((o) => values[o as keyof typeof values] !== undefined);
    if (own.length) throw new CliError(`--${own[0]} does not go with --external-root: the external root and its CA decide that`);
    return initBelowExternalRoot(env, { rootPem: values["external-root-pem"], subject: h.intermediateSubject, algorithm: h.intermediateAlgorithm, keyChoice: intermediate });
  }
  const store = await env.store();
  const transcript = await initHierarchy(env.hsm(), store.db, h, env.revocationUrls(), { root, intermediate });
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
