/**
 * EAB HMAC keys at rest: sealed under a wrapping key in the HSM, so that a
 * database row alone binds nothing. Two CAs on PostgreSQL, each with its own
 * token (in one SoftHSM2 token directory: SoftHSM2 reads one configuration
 * per process), keys made with the real CLI, accounts registered over ACME
 * with the default directory (which accepts a binding when one is given).
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig, type Config } from "../src/config.ts";
import { createLogger } from "../src/logger.ts";
import { startService, type Service } from "../src/service.ts";
import { acmeEabKeys } from "../src/store/schema.ts";
import { AcmeClient } from "./helpers/acme-client.ts";
import { newAccountKey, signEab } from "./helpers/acme-jws.ts";
import { REPO, runCliInProcess } from "./helpers/cli.ts";
import { tempDir } from "./helpers/openssl.ts";
import { createTestDatabase } from "./helpers/postgres.ts";

interface Ca {
  env: Record<string, string>;
  config: Config;
  service: Service;
  acme: AcmeClient;
}

const dataDir = tempDir("hsmca-eab-");
const databases: Array<Awaited<ReturnType<typeof createTestDatabase>>> = [];
let a: Ca;
let b: Ca;

async function startCa(tokenLabel: string, databaseUrl: string): Promise<Ca> {
  const env = {
    HSM_CA_DATA_DIR: dataDir,
    HSM_CA_PROFILES_DIR: path.join(REPO, "profiles"),
    HSM_CA_TOKEN_LABEL: tokenLabel,
    DATABASE_URL: databaseUrl,
    HSM_CA_HTTPS_HOST: "127.0.0.1",
    HSM_CA_HTTPS_PORT: "0",
    HSM_CA_HTTP_HOST: "127.0.0.1",
    HSM_CA_HTTP_PORT: "0",
    HSM_CA_HSM_SESSIONS: "2",
  };
  const config = loadConfig(env);
  const service = await startService(config, createLogger("silent"));
  const rootPem = await (await fetch(`${service.httpUrl}/ca/root.pem`)).text();
  const acme = new AcmeClient(service.httpsUrl, rootPem);
  await acme.init();
  return { env, config, service, acme };
}

async function stopCa(ca: Ca | undefined): Promise<void> {
  ca?.acme.close();
  await ca?.service.close();
}

/** `hsm-ca acme eab create` against this CA, as an admin runs it (its own process: PostgreSQL needs no running service). */
async function eabCreate(ca: Ca): Promise<{ kid: string; hmac: string }> {
  const r = await runCliInProcess(["acme", "eab", "create"], ca.env);
  expect(r.code, r.stderr).toBe(0);
  const kid = /^kid: (\S+)$/m.exec(r.stdout)?.[1];
  const hmac = /^hmac: (\S+)$/m.exec(r.stdout)?.[1];
  expect(kid && hmac, r.stdout).toBeTruthy();
  return { kid: kid!, hmac: hmac! };
}

async function register(ca: Ca, kid: string, hmac: string) {
  const key = newAccountKey("ES256");
  const url = ca.acme.directory.newAccount;
  return ca.acme.post(url, key, { termsOfServiceAgreed: true, externalAccountBinding: signEab(kid, hmac, key.jwk, url) });
}

async function row(ca: Ca, kid: string) {
  const [r] = await ca.service.ctx.store.db.select().from(acmeEabKeys).where(eq(acmeEabKeys.kid, kid));
  return r;
}

beforeAll(async () => {
  for (let i = 0; i < 2; i++) databases.push(await createTestDatabase());
  a = await startCa("ca-a", databases[0]!.url);
  b = await startCa("ca-b", databases[1]!.url);
}, 120_000);

afterAll(async () => {
  await stopCa(b);
  await stopCa(a);
  for (const db of databases) await db.drop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe("EAB HMAC keys sealed under the HSM's wrapping key", () => {
  it("a key made by the CLI is stored sealed and binds an account on its own CA", async () => {
    const { kid, hmac } = await eabCreate(a);
    const stored = (await row(a, kid))!.hmacKey;
    expect(stored).toMatch(/^v1:/);
    expect(Buffer.from(stored.slice(3), "base64url").includes(Buffer.from(hmac, "base64url"))).toBe(false);
    const res = await register(a, kid, hmac);
    expect(res.status, res.text).toBe(201);
  });

  it("the wrapping key is one AES-256 key on the CA's token, sensitive and never extractable", async () => {
    await eabCreate(a); // the first EAB key makes it
    const listed = execFileSync(
      "pkcs11-tool",
      ["--module", "/usr/lib/softhsm/libsofthsm2.so", "--token-label", "ca-a", "--login", "--pin", fs.readFileSync(path.join(dataDir, "hsm/user.pin"), "utf8").trim(), "--list-objects", "--type", "secrkey"],
      { env: { ...process.env, SOFTHSM2_CONF: path.join(dataDir, "hsm/softhsm2.conf") }, encoding: "utf8" },
    );
    const objects = listed.split(/\n(?=\S)/).filter((o) => o.includes("label:      hsm-ca eab wrapping key"));
    expect(objects, listed).toHaveLength(1);
    expect(objects[0]).toMatch(/^Secret Key Object; AES length 32/);
    expect(objects[0]).toMatch(/Access:\s+sensitive, always sensitive, never extractable, local/);
    expect(objects[0]).toMatch(/Usage:\s+encrypt, decrypt\n/);
  });

  it("a row copied to another CA, whose token has no wrapping key yet, binds nothing", async () => {
    const { kid, hmac } = await eabCreate(a);
    await b.service.ctx.store.db.insert(acmeEabKeys).values({ ...(await row(a, kid))!, accountId: null, boundAt: null });
    const res = await register(b, kid, hmac);
    expect(res.status, res.text).toBe(403);
    expect(res.body.type).toBe("urn:ietf:params:acme:error:unauthorized");
    expect(res.body.detail).toMatch(/cannot be used/);
    expect(res.text).not.toContain(hmac);
    // Still unbound there, and still good on the CA that made it.
    expect((await row(b, kid))!.accountId).toBeNull();
    expect((await register(a, kid, hmac)).status).toBe(201);
  });

  it("nor once that CA has a wrapping key of its own, while its own keys work", async () => {
    const own = await eabCreate(b); // makes b's wrapping key
    const copied = await eabCreate(a);
    await b.service.ctx.store.db.insert(acmeEabKeys).values({ ...(await row(a, copied.kid))!, accountId: null, boundAt: null });
    const res = await register(b, copied.kid, copied.hmac);
    expect(res.status, res.text).toBe(403);
    expect(res.body.detail).toMatch(/cannot be used/);
    expect((await register(b, own.kid, own.hmac)).status).toBe(201);
  });

  it("a sealed value moved to another kid of the same CA does not open", async () => {
    const first = await eabCreate(a);
    const second = await eabCreate(a);
    const sealedFirst = (await row(a, first.kid))!.hmacKey;
    await a.service.ctx.store.db.update(acmeEabKeys).set({ hmacKey: sealedFirst }).where(eq(acmeEabKeys.kid, second.kid));
    // The first key's HMAC under the second kid: the MAC would verify, but the row does not open.
    const res = await register(a, second.kid, first.hmac);
    expect(res.status, res.text).toBe(403);
    expect(res.body.detail).toMatch(/cannot be used/);
  });

  it("a key stored in clear by an earlier version is sealed in place at start, and still binds", async () => {
    const kid = "eab-from-before";
    const hmac = Buffer.alloc(32, 7).toString("base64url");
    await a.service.ctx.store.db.insert(acmeEabKeys).values({ kid, hmacKey: hmac, directory: "default" });
    // Until then it is refused: a row in clear is not trusted.
    expect((await register(a, kid, hmac)).status).toBe(403);
    await stopCa(a);
    a = await startCa("ca-a", databases[0]!.url);
    const stored = (await row(a, kid))!.hmacKey;
    expect(stored).toMatch(/^v1:/);
    expect(stored).not.toContain(hmac);
    const res = await register(a, kid, hmac);
    expect(res.status, res.text).toBe(201);
  });
});
