import crypto from "node:crypto";
import { parseArgs } from "node:util";
import { directoryPaths } from "../../acme/context.ts";
import { loadAcmeProfiles, loadProfiles } from "../../policy/profiles.ts";
import { createEabKey } from "../../acme/eab-keys.ts";
import { CliError, type CommandEnv } from "../command-env.ts";

export const acmeUsage = `hsm-ca acme eab create [--directory NAME] [--description TEXT]
  Creates an External Account Binding key for an ACME directory and prints its
  key identifier and HMAC key (base64url) once. Each key binds one account.`;

export async function acmeCommand(args: string[], env: CommandEnv): Promise<number> {
  const [what, sub, ...rest] = args;
  if (what !== "eab" || sub !== "create") throw new CliError(`unknown acme command "${[what, sub].filter(Boolean).join(" ")}"; usage:\n${acmeUsage}`);
  const { values } = parseArgs({ args: rest, options: { directory: { type: "string" }, description: { type: "string" } }, strict: true });
  const acme = loadAcmeProfiles(env.config.acme.profilesDir, loadProfiles(env.config.profilesDir));
  if (acme.size === 0) throw new CliError(`no ACME directories are configured (${env.config.acme.profilesDir})`);
  const paths = directoryPaths(acme);
  const directory = values.directory ?? [...paths].find(([, p]) => p === "/acme")![0];
  if (!acme.has(directory)) throw new CliError(`no ACME directory "${directory}"; known: ${[...acme.keys()].join(", ")}`);
  const kid = `eab-${crypto.randomBytes(9).toString("base64url")}`;
  // A key starting with "-" would be read as an option by certbot and lego: draw again.
  let hmacKey: string;
  do hmacKey = crypto.randomBytes(32).toString("base64url");
  while (hmacKey.startsWith("-"));
  const store = await env.store();
  // Stored sealed under the HSM's wrapping key (src/acme/eab-keys.ts): the database never holds it in clear.
  await createEabKey(store.db, env.hsm(), { kid, hmacKey: Buffer.from(hmacKey, "base64url"), directory, description: values.description ?? null });
  env.audit?.record({ kind: "admin.eab.create", actor: "cli", subject: kid, details: { directory, description: values.description } });
  env.out(`kid: ${kid}`);
  env.out(`hmac: ${hmacKey}`);
  env.err(`EAB key for ACME directory "${directory}" (${paths.get(directory)}/directory). It is shown only now; it binds one account.`);
  return 0;
}
