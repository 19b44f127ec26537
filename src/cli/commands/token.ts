import { parseArgs } from "node:util";
import { loadProfiles } from "../../policy/profiles.ts";
import { createApiToken, listApiTokens, revokeApiToken, ROLES, TOKEN_CACHE_MS, type ApiTokenInfo, type Role } from "../../auth/api-tokens.ts";
import { CliError, type CommandEnv } from "../command-env.ts";

export const tokenUsage = `hsm-ca token create --role admin|issuer|auditor [--profile NAME]... [--description TEXT]
  Creates an API token and prints it once (stdout). Only its SHA-256 is stored.
  Issuer tokens need one or more --profile.
hsm-ca token list
  Lists the API tokens: id, role, created, revoked, profiles, description (never a secret).
hsm-ca token revoke ID
  Revokes a token by its id: it gets 401 everywhere within ${TOKEN_CACHE_MS / 1000} s.`;

export async function tokenCommand(args: string[], env: CommandEnv): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "list") return listCommand(rest, env);
  if (sub === "revoke") return revokeCommand(rest, env);
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

async function listCommand(args: string[], env: CommandEnv): Promise<number> {
  if (args.length) throw new CliError(`token list takes no arguments; usage:\n${tokenUsage}`);
  const tokens = await listApiTokens((await env.store()).db);
  if (!tokens.length) {
    env.err("No API tokens yet: hsm-ca token create --role ... makes one.");
    return 0;
  }
  env.out(tokenTable(tokens));
  return 0;
}

/** One line a token, in aligned columns; the description last, as it may hold spaces. */
function tokenTable(tokens: ApiTokenInfo[]): string {
  const rows = [
    ["ID", "ROLE", "CREATED", "REVOKED", "PROFILES", "DESCRIPTION"],
    ...tokens.map((t) => [t.id, t.role, iso(t.createdAt), t.revokedAt ? iso(t.revokedAt) : "-", t.profiles.join(",") || "-", oneLineText(t.description ?? "")]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ").trimEnd()).join("\n");
}

const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, "Z");
/** A description is free text: no line breaks or control characters in a table row. */
const oneLineText = (s: string) => s.replace(/[\u0000-\u001f\u007f]+/g, " ");

async function revokeCommand(args: string[], env: CommandEnv): Promise<number> {
  const { positionals } = parseArgs({ args, options: {}, allowPositionals: true, strict: true });
  if (positionals.length !== 1) throw new CliError(`give one token id; usage:\n${tokenUsage}`);
  const store = await env.store();
  const { token, alreadyRevoked } = await revokeApiToken({ db: store.db, now: () => new Date(), audit: env.audit }, positionals[0]!, "cli");
  if (alreadyRevoked) {
    env.out(`Token ${token.id} was already revoked at ${iso(token.revokedAt!)}; nothing changed.`);
    return 0;
  }
  env.out(`Revoked ${token.role} token ${token.id}${token.profiles.length ? ` (profiles ${token.profiles.join(", ")})` : ""}: refused everywhere within ${TOKEN_CACHE_MS / 1000} s.`);
  return 0;
}
