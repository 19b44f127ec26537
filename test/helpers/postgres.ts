import crypto from "node:crypto";
import postgres from "postgres";

/** The PostgreSQL server every machine of this project has; overridable for other setups. */
export const BASE_URL = process.env.HSM_CA_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";

/** A fresh database per test file, dropped afterwards: files never see each other's rows. */
export async function createTestDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const admin = postgres(BASE_URL, { max: 1, onnotice: () => {} });
  const name = `hsmca_test_${crypto.randomBytes(5).toString("hex")}`;
  try {
    await admin.unsafe(`create database ${name}`);
  } catch (err) {
    await admin.end();
    throw new Error(`cannot create a test database on ${BASE_URL} (is PostgreSQL running?): ${(err as Error).message}`);
  }
  const url = new URL(BASE_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end();
    },
  };
}
