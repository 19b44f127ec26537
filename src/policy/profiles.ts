import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { profileSchema, type Profile } from "./profile-schema.ts";

export class ProfileError extends Error {}

/**
 * Loads every profiles/*.yaml|yml|json at startup. A bad file stops the
 * service with an error naming the file and the field.
 */
export function loadProfiles(dir: string): Map<string, Profile> {
  let files: string[];
  try {
    files = fs.readdirSync(dir).filter((f) => /\.(ya?ml|json)$/.test(f)).sort();
  } catch (err) {
    throw new ProfileError(`cannot read the profiles directory ${dir}: ${(err as NodeJS.ErrnoException).code}`);
  }
  if (files.length === 0) throw new ProfileError(`no profiles (*.yaml, *.json) in ${dir}`);
  const profiles = new Map<string, Profile>();
  const fileOf = new Map<string, string>();
  for (const file of files) {
    const profile = parseProfileFile(path.join(dir, file));
    const earlier = fileOf.get(profile.name);
    if (earlier) throw new ProfileError(`${file}: name: profile "${profile.name}" is already defined by ${earlier}`);
    fileOf.set(profile.name, file);
    profiles.set(profile.name, profile);
  }
  return profiles;
}

export function parseProfileFile(file: string): Profile {
  const where = path.basename(file);
  let data: unknown;
  try {
    const text = fs.readFileSync(file, "utf8");
    data = file.endsWith(".json") ? JSON.parse(text) : YAML.parse(text);
  } catch (err) {
    throw new ProfileError(`${where}: not valid ${file.endsWith(".json") ? "JSON" : "YAML"}: ${(err as Error).message.split("\n")[0]}`);
  }
  const parsed = profileSchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.length ? issue.path.join(".") : "(top level)";
    throw new ProfileError(`${where}: ${field}: ${issue.message}`);
  }
  const expected = path.basename(file).replace(/\.(ya?ml|json)$/, "");
  if (parsed.data.name !== expected) {
    throw new ProfileError(`${where}: name: "${parsed.data.name}" must match the file name "${expected}"`);
  }
  return parsed.data;
}
