import { ConfigError, type VaultSettings } from "../config.ts";
import type { Profile } from "../policy/profile-schema.ts";
import type { VaultContext } from "./context.ts";
import { VaultError } from "./errors.ts";

/** The profile a Vault role names: HSM_CA_VAULT_ROLES first, else the profile of that name. */
export function profileOfRole(ctx: VaultContext, role: string): string {
  const profile = ctx.settings.roles[role] ?? role;
  if (!ctx.profiles.has(profile)) {
    const known = [...new Set([...Object.keys(ctx.settings.roles), ...ctx.profiles.keys()])].sort();
    throw new VaultError(400, `unknown role: ${role} (roles here: ${known.join(", ")})`);
  }
  return profile;
}

/** HSM_CA_VAULT_ROLES may only name profiles that exist: checked at start, as profile files are. */
export function checkVaultRoles(settings: VaultSettings, profiles: ReadonlyMap<string, Profile>): VaultSettings {
  for (const [role, profile] of Object.entries(settings.roles)) {
    if (!profiles.has(profile)) {
      throw new ConfigError(`invalid setting HSM_CA_VAULT_ROLES: role ${role} names profile "${profile}", which does not exist; known: ${[...profiles.keys()].join(", ")}`);
    }
  }
  return settings;
}
