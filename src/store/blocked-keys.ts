import { eq } from "drizzle-orm";
import type { Database } from "./database.ts";
import { blockedKeys } from "./schema.ts";

export async function blockKey(db: Database, spkiSha256: string, reason: string, serial?: string): Promise<void> {
  await db.insert(blockedKeys).values({ spkiSha256, reason, serial: serial ?? null }).onConflictDoNothing();
}

export async function isKeyBlocked(db: Database, spkiSha256: string): Promise<boolean> {
  const [row] = await db.select({ k: blockedKeys.spkiSha256 }).from(blockedKeys).where(eq(blockedKeys.spkiSha256, spkiSha256));
  return row !== undefined;
}
