import { ConfigError, type VaultSettings } from "../config.ts";
import { isCaProfile, type Profile } from "../policy/profile-schema.ts";
import type { VaultContext } from "./context.ts";
import { VaultError } from "./errors.ts";

/** The profile a Vault role names: HSM_CA_VAULT_ROLES first, else the profile of that name. */
export function profileOfRole(ctx: VaultContext, role: string): string {
  const profile = ctx.settings.roles[role] ?? role;
  if (!ctx.profiles.has(profile) || isCaProfile(ctx.profiles.get(profile)!)) {
    // A CA profile is not a role: sign/<role> makes end-entity certificates; root/sign-intermediate makes CAs.
    const known = [...new Set([...Object.keys(ctx.settings.roles), ...[...ctx.profiles.values()].filter((p) => !isCaProfile(p)).map((p) => p.name)])].sort();
    throw new VaultError(400, `unknown role: ${role} (roles here: ${known.join(", ")})`);
  }
  return profile;
}

/**
 * HSM_CA_VAULT_ROLES may only name profiles that exist, and
 * HSM_CA_VAULT_CA_PROFILE a CA profile: checked at start, as profile files
 * are. Without HSM_CA_VAULT_CA_PROFILE, sign-intermediate uses the only CA
 * profile when there is exactly one.
 */
export function checkVaultRoles(settings: VaultSettings, profiles: ReadonlyMap<string, Profile>): VaultSettings {
  for (const [role, profile] of Object.entries(settings.roles)) {
    if (!profiles.has(profile)) {
      throw new ConfigError(`invalid setting HSM_CA_VAULT_ROLES: role ${role} names profile "${profile}", which does not exist; known: ${[...profiles.keys()].join(", ")}`);
    }
  }
  const caProfiles = [...profiles.values()].filter(isCaProfile).map((p) => p.name);
  if (settings.caProfile !== undefined && !caProfiles.includes(settings.caProfile)) {
    throw new ConfigError(`invalid setting HSM_CA_VAULT_CA_PROFILE: "${settings.caProfile}" is not a CA profile; CA profiles: ${caProfiles.join(", ") || "none"}`);
  }
  return { ...settings, caProfile: settings.caProfile ?? (caProfiles.length === 1 ? caProfiles[0] : undefined) };
}

/** The CA profile root/sign-intermediate issues from, or a Vault error that says how to choose one. */
export function intermediateProfile(ctx: VaultContext): string {
  if (ctx.settings.caProfile) return ctx.settings.caProfile;
  const caProfiles = [...ctx.profiles.values()].filter(isCaProfile).map((p) => p.name);
  throw new VaultError(
    400,
    caProfiles.length
      ? `root/sign-intermediate needs one CA profile to issue from, and there are several (${caProfiles.join(", ")}): set HSM_CA_VAULT_CA_PROFILE`
      : "root/sign-intermediate issues through a CA profile (a profile with a ca section), and there is none: see docs/profiles.md",
  );
}
