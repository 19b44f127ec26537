import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";
import type { z } from "zod";
import { acmeProfileSchema, type AcmeProfile } from "./acme-profile-schema.ts";
import { isCaProfile, profileSchema, type Profile } from "./profile-schema.ts";

export class ProfileError extends Error {}

/**
 * Loads every profiles/*.yaml|yml|json at startup. A bad file stops the
 * service with an error naming the file and the field.
 */
export function loadProfiles(dir: string): Map<string, Profile> {
  const profiles = loadNamedFiles(dir, profileSchema);
  if (profiles.size === 0) throw new ProfileError(`no profiles (*.yaml, *.json) in ${dir}`);
  return profiles;
}

/**
 * Loads the ACME directories in profiles/acme/. No directory there means
 * no ACME. Each must name a certificate profile that exists.
 */
export function loadAcmeProfiles(dir: string, certificateProfiles: ReadonlyMap<string, Profile>): Map<string, AcmeProfile> {
  if (!fs.existsSync(dir)) return new Map();
  const acme = loadNamedFiles(dir, acmeProfileSchema);
  for (const [name, p] of acme) {
    if (!certificateProfiles.has(p.certificateProfile)) {
      throw new ProfileError(`${fileNameOf(dir, name)}: certificateProfile: no certificate profile "${p.certificateProfile}"`);
    }
    if (isCaProfile(certificateProfiles.get(p.certificateProfile)!)) {
      // ACME proves control of names, which says nothing about who may run a CA: a sub-CA is asked for by REST, the CLI or cert-manager.
      throw new ProfileError(`${fileNameOf(dir, name)}: certificateProfile: profile "${p.certificateProfile}" issues CA certificates, which ACME never does`);
    }
    if (certificateProfiles.get(p.certificateProfile)!.approvals.required > 0) {
      // ACME finalizes without a person in the loop: it cannot wait for M-of-N approval.
      throw new ProfileError(`${fileNameOf(dir, name)}: certificateProfile: profile "${p.certificateProfile}" requires approvals, which ACME cannot wait for`);
    }
  }
  return acme;
}

export function parseProfileFile(file: string): Profile {
  return parseNamedFile(file, profileSchema);
}

function loadNamedFiles<T extends { name: string }>(dir: string, schema: z.ZodType<T>): Map<string, T> {
  let files: string[];
  try {
    files = fs.readdirSync(dir).filter((f) => /\.(ya?ml|json)$/.test(f)).sort();
  } catch (err) {
    throw new ProfileError(`cannot read the profiles directory ${dir}: ${(err as NodeJS.ErrnoException).code}`);
  }
  const items = new Map<string, T>();
  const fileOf = new Map<string, string>();
  for (const file of files) {
    const item = parseNamedFile(path.join(dir, file), schema);
    const earlier = fileOf.get(item.name);
    if (earlier) throw new ProfileError(`${file}: name: profile "${item.name}" is already defined by ${earlier}`);
    fileOf.set(item.name, file);
    items.set(item.name, item);
  }
  return items;
}

function parseNamedFile<T extends { name: string }>(file: string, schema: z.ZodType<T>): T {
  const where = path.basename(file);
  let data: unknown;
  try {
    const text = fs.readFileSync(file, "utf8");
    data = file.endsWith(".json") ? JSON.parse(text) : YAML.parse(text);
  } catch (err) {
    throw new ProfileError(`${where}: not valid ${file.endsWith(".json") ? "JSON" : "YAML"}: ${(err as Error).message.split("\n")[0]}`);
  }
  const parsed = schema.safeParse(data);
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

function fileNameOf(dir: string, name: string): string {
  return fs.readdirSync(dir).find((f) => f.replace(/\.(ya?ml|json)$/, "") === name) ?? name;
}
