import type { Database } from "./database.ts";
import { rotationTicks } from "./schema.ts";

/** Claims a scheduled tick: true for the first replica only. */
export async function claimTick(db: Database, tick: Date): Promise<boolean> {
  const rows = await db.insert(rotationTicks).values({ tick }).onConflictDoNothing().returning({ tick: rotationTicks.tick });
  return rows.length === 1;
}
