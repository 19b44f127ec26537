import crypto from "node:crypto";
import fs from "node:fs";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newSerial } from "../src/ca/serial.ts";
import { insertCertificate, type NewCertificateRow } from "../src/store/certificates.ts";
import { openStore, type Store } from "../src/store/database.ts";
import { cas, certificates } from "../src/store/schema.ts";
import { isUniqueViolation } from "../src/store/errors.ts";
import { blockKey, isKeyBlocked } from "../src/store/blocked-keys.ts";
import { tempDir } from "./helpers/openssl.ts";
import { createTestDatabase } from "./helpers/postgres.ts";

// Group commit: concurrent issuance records go to the database together, and
// each caller still learns about its own row only (stored, or why not).

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let store: Store;
let issuerId: number;
const dataDir = tempDir("hsmca-writer-");

beforeAll(async () => {
  db = await createTestDatabase();
  store = await openStore({ databaseUrl: db.url, dataDir });
  const [ca] = await store.db
    .insert(cas)
    .values({ role: "intermediate", status: "active", subject: "CN=t", keyLabel: "t", keyId: "00", keyAlgorithm: "ecdsa-p256", certificatePem: "x", notBefore: new Date(), notAfter: new Date(Date.now() + 86400e3), serial: "01", fingerprintSha256: "00", spkiSha256: "00" })
    .returning();
  issuerId = ca!.id;
});

afterAll(async () => {
  await store?.close();
  await db?.drop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

function row(serial = newSerial()): NewCertificateRow {
  return {
    serial,
    issuerId,
    profile: "tls-server",
    subject: `CN=${serial}`,
    sans: [],
    notBefore: new Date(),
    notAfter: new Date(Date.now() + 3600e3),
    certificatePem: "pem",
    fingerprintSha256: crypto.randomBytes(32).toString("hex"),
    spkiSha256: "00",
    requestedBy: null,
    crlPartition: null,
  };
}

describe("certificate writer (group commit)", () => {
  it("stores every one of many concurrent rows and gives each caller its own row", async () => {
    const rows = Array.from({ length: 300 }, () => row());
    const stored = await Promise.all(rows.map((r) => insertCertificate(store.db, r)));
    expect(stored.map((s) => s.serial)).toEqual(rows.map((r) => r.serial));
    expect(new Set(stored.map((s) => s.id)).size).toBe(300);
    for (const s of stored.slice(0, 5)) {
      const [again] = await store.db.select().from(certificates).where(eq(certificates.serial, s.serial));
      expect(again?.id).toBe(s.id);
    }
  });

  it("fails only the row whose serial repeats when it shares a batch with others", async () => {
    const taken = (await insertCertificate(store.db, row())).serial;
    const rows = Array.from({ length: 50 }, () => row());
    rows[17] = row(taken);
    const results = await Promise.allSettled(rows.map((r) => insertCertificate(store.db, r)));
    const failed = results.flatMap((r, i) => (r.status === "rejected" ? [i] : []));
    expect(failed).toEqual([17]);
    expect(isUniqueViolation((results[17] as PromiseRejectedResult).reason)).toBe(true);
    const all = await store.db.select({ serial: certificates.serial }).from(certificates);
    expect(all.filter((r) => r.serial === taken)).toHaveLength(1);
    for (const [i, r] of rows.entries()) if (i !== 17) expect(all.some((a) => a.serial === r.serial)).toBe(true);
  });
});

describe("blocked-key lookups (batched)", () => {
  it("answers each of many concurrent questions about its own key", async () => {
    const keys = Array.from({ length: 120 }, () => crypto.randomBytes(32).toString("hex"));
    const blocked = new Set(keys.filter((_, i) => i % 7 === 3));
    for (const k of blocked) await blockKey(store.db, k, "keyCompromise");
    const answers = await Promise.all(keys.map((k) => isKeyBlocked(store.db, k)));
    expect(answers).toEqual(keys.map((k) => blocked.has(k)));
    // A key blocked now is refused by the very next question: nothing is cached.
    await blockKey(store.db, keys[0]!, "keyCompromise");
    expect(await isKeyBlocked(store.db, keys[0]!)).toBe(true);
  });
});
