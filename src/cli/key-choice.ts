import type { KeyChoice } from "../ceremony/ca-key.ts";
import { CliError } from "./command-env.ts";

/**
 * The options that name a key already on the token for a new CA (made in a
 * vendor's key ceremony), shared by every command that makes a CA:
 *
 *   --key-label L / --key-id HEX        (ceremonies: one CA)
 *   --root-key-label, --root-key-id,
 *   --intermediate-key-label, --intermediate-key-id   (init: both CAs)
 *   --allow-weak-key                    (adopt a key that fails the checks anyway; recorded)
 *
 * Spread keyChoiceOptions(...) into parseArgs' options and turn the values
 * into a KeyChoice with keyChoiceFrom(values, prefix).
 */
export type KeyChoicePrefix = "" | "root-" | "intermediate-";

type StringOption = { type: "string" };

export function keyChoiceOptions<P extends KeyChoicePrefix>(...prefixes: P[]): Record<`${P}key-label` | `${P}key-id`, StringOption> {
  const options: Record<string, StringOption> = {};
  for (const p of prefixes) {
    options[`${p}key-label`] = { type: "string" };
    options[`${p}key-id`] = { type: "string" };
  }
  return options as Record<`${P}key-label` | `${P}key-id`, StringOption>;
}

export const ALLOW_WEAK_KEY_OPTION = { "allow-weak-key": { type: "boolean" } } as const;

/** Usage text for the options, e.g. keyChoiceUsage("intermediate-"). */
export function keyChoiceUsage(prefix: KeyChoicePrefix): string {
  return `[--${prefix}key-label LABEL | --${prefix}key-id HEX]`;
}

/**
 * The KeyChoice the options give for one CA (the prefix picks which), or
 * undefined when they name no key (a new one is made). CliError (exit 2)
 * for an empty label or an id that is not hex.
 */
export function keyChoiceFrom(values: Record<string, unknown>, prefix: KeyChoicePrefix): KeyChoice | undefined {
  const label = values[`${prefix}key-label`] as string | undefined;
  const rawId = values[`${prefix}key-id`] as string | undefined;
  if (label === undefined && rawId === undefined) return undefined;
  if (label !== undefined && label.length === 0) throw new CliError(`--${prefix}key-label must not be empty`);
  let id: string | undefined;
  if (rawId !== undefined) {
    // As pkcs11-tool prints it (0a0b) or with colons as p11tool does (0a:0b).
    id = rawId.replaceAll(":", "").toLowerCase();
    if (!/^([0-9a-f]{2})+$/.test(id)) throw new CliError(`--${prefix}key-id must be the key's CKA_ID in hex (e.g. 0a0b), not "${rawId}"`);
  }
  return { ...(label !== undefined ? { label } : {}), ...(id !== undefined ? { id } : {}), allowWeakKey: values["allow-weak-key"] === true };
}

/** --allow-weak-key means nothing without a key to adopt: refused rather than ignored. */
export function requireKeyForAllowWeak(values: Record<string, unknown>, choices: Array<KeyChoice | undefined>, flags: string): void {
  if (values["allow-weak-key"] === true && choices.every((c) => c === undefined)) {
    throw new CliError(`--allow-weak-key applies to a key adopted from the token: give ${flags}`);
  }
}
