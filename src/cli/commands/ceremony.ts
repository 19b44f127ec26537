import { parseArgs } from "node:util";
import * as x509 from "@peculiar/x509";
import pino from "pino";
import { transcriptDetails } from "../../ceremony/transcript-details.ts";
import { createIntermediate, createRoot, entryFor, formatTranscript, type Transcript } from "../../ceremony/init-hierarchy.ts";
import { retireRoot, rolloverRoot, RolloverError, type RolloverOptions } from "../../ceremony/rollover-root.ts";
import { rotateIntermediate } from "../../ceremony/rotate.ts";
import { isCaKeyAlgorithm, CA_KEY_ALGORITHMS } from "../../hsm/key-algorithms.ts";
import { parseDuration } from "../../policy/duration.ts";
import { CrlPublisher } from "../../revocation/crl-publisher.ts";
import { activeCa, listCas } from "../../store/cas.ts";
import { insertCeremony } from "../../store/ceremonies.ts";
import { LOCKS, withAdvisoryLock } from "../../store/locks.ts";
import { CliError, type CommandEnv } from "../command-env.ts";
import { externalCeremonyUsage, importIntermediateCommand, pendingCsrCommand, refuseExternalRoot } from "./external-ceremony.ts";
import { ALLOW_WEAK_KEY_OPTION, keyChoiceFrom, keyChoiceOptions, keyChoiceUsage, requireKeyForAllowWeak } from "../key-choice.ts";

export const ceremonyUsage = `hsm-ca ceremony create-root | sign-intermediate ${keyChoiceUsage("")} [--allow-weak-key]
hsm-ca ceremony sign-root-crl [--next-update 30d]
hsm-ca ceremony rollover-root [--root-subject DN] [--root-algorithm ALG] [--root-validity-days N] ${keyChoiceUsage("")} [--allow-weak-key]
hsm-ca ceremony retire-root
  Root key ceremonies, for a root that lives on its own token (HSM_CA_ROOT_TOKEN_LABEL), present
  only for the ceremony. create-root makes the root key and certificate; sign-intermediate has the
  root certify a new issuing intermediate (a rotation); sign-root-crl publishes the CRL of every
  root whose key is present, valid until --next-update (default 30d). Each prints a transcript
  and stores it.
  --key-label/--key-id adopt a key already on the token instead of making one (the root's on the
  root token); --allow-weak-key adopts one that fails the checks anyway, recorded.
  See docs/adopting-keys.md.
  rollover-root makes a new root (default subject: the old one's with its number counted up),
  cross-signs it with the old root and re-signs the active intermediate under it: both roots
  validate what is issued. retire-root ends the rollover: the new root becomes the default, the
  old one is retired (still trusted until it expires). See docs/root-rollover.md.
${externalCeremonyUsage}`;

const ROLLOVER_OPTIONS = {
  "root-subject": { type: "string" },
  "root-algorithm": { type: "string" },
  "root-validity-days": { type: "string" },
} as const;

export async function ceremonyCommand(args: string[], env: CommandEnv): Promise<number> {
  const [what, ...rest] = args;
  // Below an external root: their own options (certificate files, the key to adopt).
  if (what === "import-intermediate") return importIntermediateCommand(rest, env);
  if (what === "pending-csr") return pendingCsrCommand(rest, env);
  const { values } = parseArgs({
    args: rest,
    options: { "next-update": { type: "string" }, ...ROLLOVER_OPTIONS, ...keyChoiceOptions(""), ...ALLOW_WEAK_KEY_OPTION },
    strict: true,
  });
  const keyChoice = keyChoiceFrom(values, "");
  if (keyChoice && what !== "create-root" && what !== "sign-intermediate" && what !== "rollover-root") {
    throw new CliError(`--key-label and --key-id apply to create-root, sign-intermediate and rollover-root, not ${what ?? "(none)"}`);
  }
  requireKeyForAllowWeak(values, [keyChoice], "--key-label or --key-id");
  if (what !== "rollover-root" && (values["root-subject"] ?? values["root-algorithm"] ?? values["root-validity-days"]) !== undefined) {
    throw new CliError("--root-subject, --root-algorithm and --root-validity-days go with rollover-root only");
  }
  const store = await env.store();
  const hsm = env.hsm();
  let transcript: Transcript;
  switch (what) {
    case "create-root": {
      transcript = await withAdvisoryLock(store.db, LOCKS.hierarchy, async (tx) => {
        if (await activeCa(tx, "root")) throw new CliError("an active root exists already; a second root is not created");
        const row = await createRoot(hsm, tx, env.config.hierarchy, keyChoice);
        const t: Transcript = { ceremony: "create-root", at: new Date().toISOString(), token: hsm.status.rootToken.label, created: [await entryFor(hsm, row)] };
        await insertCeremony(tx, "create-root", t);
        return t;
      });
      break;
    }
    case "sign-intermediate": {
      // The first intermediate under a new root, or a rotation of the current one.
      await refuseExternalRoot(store.db, "its CA signs the intermediate: hsm-ca ceremony import-intermediate --cert FILE");
      if (!(await activeCa(store.db, "intermediate"))) {
        transcript = await withAdvisoryLock(store.db, LOCKS.hierarchy, async (tx) => {
          const root = await activeCa(tx, "root");
          if (!root) throw new CliError("there is no root: run hsm-ca ceremony create-root");
          const row = await createIntermediate(hsm, tx, root, env.config.hierarchy, env.revocationUrls(), keyChoice);
          const t: Transcript = { ceremony: "sign-intermediate", at: new Date().toISOString(), token: hsm.status.rootToken.label, created: [await entryFor(hsm, row)] };
          await insertCeremony(tx, "sign-intermediate", t);
          return t;
        });
      } else {
        const done = await rotateIntermediate(hsm, store.db, env.config.hierarchy, env.revocationUrls(), "root ceremony", undefined, keyChoice);
        if (!done?.transcript) throw new CliError("no intermediate was signed");
        transcript = { ...done.transcript, ceremony: "sign-intermediate" };
      }
      await env.hierarchyChanged();
      break;
    }
    case "rollover-root": {
      const options = rolloverOptions(values);
      const done = await asCliError(rolloverRoot(hsm, store.db, env.config.hierarchy, options, env.revocationUrls(), keyChoice));
      transcript = done.transcript;
      await env.hierarchyChanged();
      env.audit?.record({ kind: "admin.ceremony", actor: "cli", subject: done.root.serial, details: transcriptDetails(transcript) });
      env.out(formatTranscript(transcript));
      env.out(`\nThe new root ${done.root.subject} is incoming: /ca/bundle.pem carries both roots, ACME offers the chain to it as an alternate.`);
      env.out("Distribute it to relying parties; once they trust it, run `hsm-ca ceremony retire-root`. The transcript is stored in the database (ceremonies table).");
      return 0;
    }
    case "retire-root": {
      const done = await asCliError(retireRoot(hsm, store.db, env.config.hierarchy, env.revocationUrls()));
      transcript = done.transcript;
      await env.hierarchyChanged();
      env.audit?.record({
        kind: "admin.ceremony",
        actor: "cli",
        subject: done.root.serial,
        details: { ...transcriptDetails(transcript), active_root: done.root.subject, retired_root: done.retired.subject },
      });
      env.out(formatTranscript(transcript));
      env.out(`\nThe root ${done.root.subject} is now the active root (/ca/root.pem, default chains).`);
      env.out(`The old root ${done.retired.subject} is retired: it still signs its CRL and stays in /ca/bundle.pem until it expires (${done.retired.notAfter.toISOString()}).`);
      return 0;
    }
    case "sign-root-crl": {
      const lifetime = parseDuration(values["next-update"] ?? "30d");
      if (!lifetime) throw new CliError(`--next-update "${values["next-update"]}" is not a duration like 30d`);
      await refuseExternalRoot(store.db, "its CRL is published by the CA that holds its key");
      // A retired root (after a rollover) still has live certificates: its CRL is signed too, as is an incoming root's.
      const now = new Date();
      const others = (await listCas(store.db)).filter(
        (c) => c.role === "root" && c.status !== "active" && c.status !== "revoked" && c.notAfter > now && !c.keyDestroyedAt && hsm.hasKey(c.keyLabel),
      );
      const root = await activeCa(store.db, "root");
      if (!root) throw new CliError("there is no root: run hsm-ca ceremony create-root");
      const publisher = new CrlPublisher({
        db: store.db,
        hsm,
        log: pino({ level: "silent" }),
        now: () => new Date(),
        urls: env.revocationUrls,
        settings: { partitions: 0, fullLifetimeMs: lifetime, deltaLifetimeMs: lifetime },
      });
      if (!(await publisher.publishIssuerById(root.id, { full: true, lifetimeMs: lifetime }))) {
        throw new CliError(`the root key is not available (token "${hsm.status.rootToken.label}"${hsm.status.rootToken.present ? "" : " is not present"})`);
      }
      const at = new Date();
      transcript = { ceremony: "sign-root-crl", at: at.toISOString(), token: hsm.status.rootToken.label, created: [] };
      env.audit?.record({ kind: "admin.ceremony", actor: "cli", subject: root.serial, details: { ...transcriptDetails(transcript), root: root.subject, next_update: new Date(at.getTime() + lifetime) } });
      await insertCeremony(store.db, "sign-root-crl", { ...transcript, root: root.subject, nextUpdate: new Date(at.getTime() + lifetime).toISOString() });
      env.out(formatTranscript(transcript));
      env.out(`Published the root's CRL (${env.revocationUrls().crl(root.id, -1)}), valid until ${new Date(at.getTime() + lifetime).toISOString()}.`);
      for (const other of others) {
        if (!(await publisher.publishIssuerById(other.id, { full: true, lifetimeMs: lifetime }))) continue;
        env.out(`Published the ${other.status} root's CRL (${other.subject}, ${env.revocationUrls().crl(other.id, -1)}), valid until ${new Date(at.getTime() + lifetime).toISOString()}.`);
      }
      return 0;
    }
    default:
      throw new CliError(`unknown ceremony "${what ?? ""}"; usage:\n${ceremonyUsage}`);
  }
  env.audit?.record({ kind: "admin.ceremony", actor: "cli", details: transcriptDetails(transcript) });
  env.out(formatTranscript(transcript));
  env.out("\nThe transcript is stored in the database (ceremonies table).");
  return 0;
}

/** The new root's settings from the command line; the configured root's where not given. */
function rolloverOptions(values: { "root-subject"?: string; "root-algorithm"?: string; "root-validity-days"?: string }): RolloverOptions {
  const options: RolloverOptions = {};
  const subject = values["root-subject"];
  if (subject !== undefined) {
    let cn: string | undefined;
    try {
      cn = new x509.Name(subject).getField("CN")[0];
    } catch {
      throw new CliError(`--root-subject "${subject}" is not a distinguished name like "CN=Example Root CA 2, O=Example"`);
    }
    if (!cn) throw new CliError(`--root-subject "${subject}" has no CN: clients pick a chain by the root's common name`);
    options.subject = subject;
  }
  const algorithm = values["root-algorithm"];
  if (algorithm !== undefined) {
    if (!isCaKeyAlgorithm(algorithm)) throw new CliError(`--root-algorithm "${algorithm}" is not one of ${CA_KEY_ALGORITHMS.join(", ")}`);
    options.algorithm = algorithm;
  }
  const days = values["root-validity-days"];
  if (days !== undefined) {
    if (!/^[1-9][0-9]{0,5}$/.test(days)) throw new CliError(`--root-validity-days "${days}" is not a whole number of days`);
    options.validityDays = Number(days);
  }
  return options;
}

/** A rollover that cannot be done now is a one-line refusal (exit 1), not a crash. */
async function asCliError<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof RolloverError) throw new CliError(err.message, 1);
    throw err;
  }
}
