import { parseArgs } from "node:util";
import { loadProfiles } from "../../policy/profiles.ts";
import { parseDuration } from "../../policy/duration.ts";
import { createAppRole, DEFAULT_APPROLE_TTL_SECONDS, listAppRoles, revokeAppRole } from "../../vault/approles.ts";
import { CliError, type CommandEnv } from "../command-env.ts";

export const vaultUsage = `hsm-ca vault approle create --name NAME --profile NAME [--profile NAME]... [--ttl 1h]
  Creates an AppRole for the Vault-compatible API (POST /v1/auth/approle/login) with an issuer
  token's scope, and prints its role_id and secret_id once (only the secret_id's SHA-256 is kept).
  --ttl: how long a login's client token lasts (default ${DEFAULT_APPROLE_TTL_SECONDS / 3600}h).
hsm-ca vault approle list
  Lists the AppRoles: id, name, role_id, profiles, token ttl, created, revoked (never a secret_id).
hsm-ca vault approle revoke NAME|ID
  Revokes an AppRole: its logins and its client tokens stop working at once.`;

export async function vaultCommand(args: string[], env: CommandEnv): Promise<number> {
  const [group, sub, ...rest] = args;
  if (group !== "approle") throw new CliError(`unknown vault command "${group ?? ""}"; usage:\n${vaultUsage}`);
  if (sub === "create") return createCommand(rest, env);
  if (sub === "list") return listCommand(rest, env);
  if (sub === "revoke") return revokeCommand(rest, env);
  throw new CliError(`unknown vault approle command "${sub ?? ""}"; usage:\n${vaultUsage}`);
}

async function createCommand(args: string[], env: CommandEnv): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { name: { type: "string" }, profile: { type: "string", multiple: true }, profiles: { type: "string" }, ttl: { type: "string" } },
    strict: true,
  });
  if (!values.name) throw new CliError("--name is required");
  // --profiles a,b is accepted beside repeated --profile, as Vault's CLI writes lists.
  const profiles = [...(values.profile ?? []), ...(values.profiles?.split(",").map((p) => p.trim()).filter(Boolean) ?? [])];
  if (!profiles.length) throw new CliError("give at least one --profile: the profiles its client tokens may issue from");
  const known = [...loadProfiles(env.config.profilesDir).keys()];
  const unknown = profiles.find((p) => !known.includes(p));
  if (unknown) throw new CliError(`no profile "${unknown}"; known: ${known.join(", ")}`);
  let ttlSeconds = DEFAULT_APPROLE_TTL_SECONDS;
  if (values.ttl !== undefined) {
    const ms = parseDuration(values.ttl);
    if (ms === undefined || ms < 60_000 || ms > 31 * 86_400_000) throw new CliError(`--ttl must be a duration from 1m to 31d like "1h" (got "${values.ttl}")`);
    ttlSeconds = ms / 1000;
  }
  const store = await env.store();
  const role = await createAppRole(store.db, { name: values.name, profiles: [...new Set(profiles)], tokenTtlSeconds: ttlSeconds });
  env.audit?.record({
    kind: "admin.vault.approle.create",
    actor: "cli",
    subject: role.id,
    details: { name: role.name, role_id: role.roleId, profiles: role.profiles, token_ttl_seconds: role.tokenTtlSeconds },
  });
  env.out(`role_id    ${role.roleId}\nsecret_id  ${role.secretId}`);
  env.err(`Created AppRole ${role.name} (${role.id}) for profiles ${role.profiles.join(", ")}; client tokens last ${role.tokenTtlSeconds} s. The secret_id is shown only now: store it in your secret manager.`);
  return 0;
}

async function listCommand(args: string[], env: CommandEnv): Promise<number> {
  if (args.length) throw new CliError(`vault approle list takes no arguments; usage:\n${vaultUsage}`);
  const roles = await listAppRoles((await env.store()).db);
  if (!roles.length) {
    env.err("No AppRoles yet: hsm-ca vault approle create --name ... --profile ... makes one.");
    return 0;
  }
  const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, "Z");
  const rows = [
    ["ID", "NAME", "ROLE_ID", "PROFILES", "TTL", "CREATED", "REVOKED"],
    ...roles.map((r) => [r.id, r.name, r.roleId, r.profiles.join(","), `${r.tokenTtlSeconds}s`, iso(r.createdAt), r.revokedAt ? iso(r.revokedAt) : "-"]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  env.out(rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n"));
  return 0;
}

async function revokeCommand(args: string[], env: CommandEnv): Promise<number> {
  const { positionals } = parseArgs({ args, options: {}, allowPositionals: true, strict: true });
  if (positionals.length !== 1) throw new CliError(`give one AppRole name or id; usage:\n${vaultUsage}`);
  const role = await revokeAppRole((await env.store()).db, positionals[0]!, new Date());
  if (!role) throw new CliError(`no active AppRole named or with id "${positionals[0]!.slice(0, 64)}"`, 1);
  env.audit?.record({ kind: "admin.vault.approle.revoke", actor: "cli", subject: role.id, details: { name: role.name, role_id: role.roleId, profiles: role.profiles } });
  env.out(`Revoked AppRole ${role.name} (${role.id}): its logins and client tokens are refused from now on.`);
  return 0;
}
