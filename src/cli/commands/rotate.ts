import { parseArgs } from "node:util";
import { formatTranscript } from "../../ceremony/init-hierarchy.ts";
import { planRotation, rotateIntermediate } from "../../ceremony/rotate.ts";
import { CliError, type CommandEnv } from "../command-env.ts";

export const rotateUsage = `hsm-ca rotate [--dry-run]
  Rotates the issuing intermediate now: a new key in the HSM, a certificate from the root,
  and the switch of issuance to it (the old one keeps answering for its certificates).
  --dry-run prints what would happen and changes nothing.`;

export async function rotateCommand(args: string[], env: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { "dry-run": { type: "boolean" } }, allowPositionals: true, strict: true });
  if (positionals.length) throw new CliError(`unexpected argument "${positionals[0]}"; usage:\n${rotateUsage}`);
  const store = await env.store();
  const plan = await planRotation(store.db, env.config.hierarchy);
  const hsm = env.hsm();
  if (values["dry-run"]) {
    env.out(`Would rotate the issuing intermediate:`);
    env.out(`  retire   ${plan.current.subject}  (key ${plan.current.keyLabel}, valid until ${plan.current.notAfter.toISOString()})`);
    env.out(`  create   ${plan.subject}  (${plan.algorithm} key on token "${hsm.tokenLabel}", ${plan.validityDays} days, signed by ${plan.root.subject})`);
    env.out(`  root key ${hsm.hasKey(plan.root.keyLabel) ? "available" : `NOT available (token "${hsm.rootToken.label}")`}`);
    env.out("Nothing was changed.");
    return 0;
  }
  const done = await rotateIntermediate(hsm, store.db, env.config.hierarchy, env.revocationUrls(), "hsm-ca rotate");
  if (!done) throw new CliError("the rotation did not happen");
  await env.hierarchyChanged();
  env.out(formatTranscript(done.transcript));
  env.out(`\nRetired ${plan.current.subject}: it no longer issues, and answers for its certificates until they expire.`);
  return 0;
}
