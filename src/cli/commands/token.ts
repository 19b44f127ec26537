import { parseArgs } from "node:util";
import { loadProfiles } from "../../policy/profiles.ts";
import { createApiToken, ROLES, type Role } from "../../auth/api-tokens.ts";
import { CliError, type CommandEnv } from "../command-env.ts";

export const tokenUsage = `hsm-ca token create --role admin|issuer|auditor [--profile NAME]... [--description TEXT]
  Creates an API token and prints it once (stdout). Only its SHA-256 is stored.
  Issuer tokens need one or more --profile.`;

export async function tokenCommand(args: string[], env: CommandEnv): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== "create") throw new CliError(`unknown token command "${sub ?? ""}"; usage:\n${tokenUsage}`);
  const { values } = parseArgs({
    args: rest,
    options: {
      role: { type: "string" },
      profile: { type: "string", multiple: true },
      description: { type: "string" },
    },
    strict: true,
  });
  const role = values.role;
  if (!role || !(ROLES as readonly string[]).includes(role)) throw new CliError(`--role must be one of ${ROLES.join(", ")}`);
  const profiles = values.profile ?? [];
  if (profiles.length > 0) {
    // A token for a profile that does not exist would fail every request: refuse it now.
    const known = [...loadProfiles(env.config.profilesDir).keys()];
    const unknown = profiles.find((p) => !known.includes(p));
    if (unknown) throw new CliError(`no profile "${unknown}"; known: ${known.join(", ")}`);
  }
  const store = await env.store();
  const token = await createApiToken(store.db, { role: role as Role, profiles, description: values.description });
  env.audit?.record({ kind: "admin.token.create", actor: "cli", subject: token.id, details: { role: token.role, profiles: token.profiles, description: values.description } });
  env.out(token.secret);
  env.err(
    `Created ${token.role} token ${token.id}${token.profiles.length ? ` for profiles ${token.profiles.join(", ")}` : ""}. ` +
      "It is shown only now: store it in your secret manager.",
  );
  return 0;
}
