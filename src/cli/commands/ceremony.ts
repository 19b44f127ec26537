import { parseArgs } from "node:util";
import pino from "pino";
import { transcriptDetails } from "../../ceremony/transcript-details.ts";
import { createIntermediate, createRoot, entryFor, formatTranscript, type Transcript } from "../../ceremony/init-hierarchy.ts";
import { rotateIntermediate } from "../../ceremony/rotate.ts";
import { parseDuration } from "../../policy/duration.ts";
import { CrlPublisher } from "../../revocation/crl-publisher.ts";
import { activeCa } from "../../store/cas.ts";
import { insertCeremony } from "../../store/ceremonies.ts";
import { LOCKS, withAdvisoryLock } from "../../store/locks.ts";
import { CliError, type CommandEnv } from "../command-env.ts";
import { externalCeremonyUsage, importIntermediateCommand, pendingCsrCommand, refuseExternalRoot } from "./external-ceremony.ts";
import { ALLOW_WEAK_KEY_OPTION, keyChoiceFrom, keyChoiceOptions, keyChoiceUsage, requireKeyForAllowWeak } from "../key-choice.ts";

export const ceremonyUsage = `hsm-ca ceremony create-root | sign-intermediate ${keyChoiceUsage("")} [--allow-weak-key]
hsm-ca ceremony sign-root-crl [--next-update 30d]
  Root key ceremonies, for a root that lives on its own token (HSM_CA_ROOT_TOKEN_LABEL), present
  only for the ceremony. create-root makes the root key and certificate; sign-intermediate has the
  root certify a new issuing intermediate (a rotation); sign-root-crl publishes the root's CRL,
  valid until --next-update (default 30d). Each prints a transcript and stores it.
  --key-label/--key-id adopt a key already on the token instead of making one (the root's on the
  root token); --allow-weak-key adopts one that fails the checks anyway, recorded.
  See docs/adopting-keys.md.
${externalCeremonyUsage}`;

export async function ceremonyCommand(args: string[], env: CommandEnv): Promise<number> {
  const [what, ...rest] = args;
  // Below an external root: their own options (certificate files, the key to adopt).
  if (what === "import-intermediate") return importIntermediateCommand(rest, env);
  if (what === "pending-csr") return pendingCsrCommand(rest, env);
  const { values } = parseArgs({ args: rest, options: { "next-update": { type: "string" }, ...keyChoiceOptions(""), ...ALLOW_WEAK_KEY_OPTION }, strict: true });
  const keyChoice = keyChoiceFrom(values, "");
  if (keyChoice && what !== "create-root" && what !== "sign-intermediate") throw new CliError(`--key-label and --key-id apply to create-root and sign-intermediate, not ${what ?? "(none)"}`);
  requireKeyForAllowWeak(values, [keyChoice], "--key-label or --key-id");
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
    case "sign-root-crl": {
      const lifetime = parseDuration(values["next-update"] ?? "30d");
      if (!lifetime) throw new CliError(`--next-update "${values["next-update"]}" is not a duration like 30d`);
      await refuseExternalRoot(store.db, "its CRL is published by the CA that holds its key");
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
