import { eq, or } from "drizzle-orm";
import type { Database } from "./database.ts";
import { cas, pendingCas } from "./schema.ts";

/**
 * Which CA (or intermediate waiting for its certificate) already uses a
 * key: by its label, or by its public key (a key relabelled on the token
 * is still the same key). Undefined when none does. Adopting a key twice
 * would give two CAs one key.
 */
export async function caUsingKey(db: Database, key: { label: string; spkiSha256: string }): Promise<string | undefined> {
  const [ca] = await db
    .select({ id: cas.id, role: cas.role, status: cas.status, subject: cas.subject })
    .from(cas)
    .where(or(eq(cas.keyLabel, key.label), eq(cas.spkiSha256, key.spkiSha256)))
    .limit(1);
  if (ca) return `the ${ca.status} ${ca.role} CA ${ca.id} (${ca.subject})`;
  const [pending] = await db.select({ id: pendingCas.id, subject: pendingCas.subject }).from(pendingCas).where(eq(pendingCas.keyLabel, key.label)).limit(1);
  if (pending) return `the intermediate ${pending.subject} waiting for its certificate (pending CA ${pending.id})`;
  return undefined;
}
