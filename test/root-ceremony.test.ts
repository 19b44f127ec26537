import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import { createLogger } from "../src/logger.ts";
import { startServiceWithCli } from "../src/serve.ts";
import type { Service } from "../src/service.ts";
import { REPO, runCli, runCliInProcess } from "./helpers/cli.ts";
import { apiClient } from "./helpers/https.ts";
import { makeCsr, tempDir, verify } from "./helpers/openssl.ts";
import { copyMigratedPglite } from "./helpers/pglite-template.ts";
import { fetchBytes, RelyingParty } from "./helpers/relying-party.ts";

/**
 * An offline root: the root key on its own token, used only in ceremonies
 * run with HSM_CA_ROOT_TOKEN_LABEL; the service runs without it.
 */
const dataDir = tempDir("hsmca-ceremony-");
const ceremonyEnv = { HSM_CA_DATA_DIR: dataDir, HSM_CA_ROOT_TOKEN_LABEL: "offline-root" };
let service: Service | undefined;
const rp = new RelyingParty();

afterAll(async () => {
  await service?.close();
  rp.cleanup();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

const privateKeysOn = (token: string) =>
  execFileSync(
    "pkcs11-tool",
    ["--module", "/usr/lib/softhsm/libsofthsm2.so", "--token-label", token, "--login", "--pin", fs.readFileSync(path.join(dataDir, "hsm/user.pin"), "utf8").trim(), "--list-objects", "--type", "privkey"],
    { encoding: "utf8", env: { ...process.env, SOFTHSM2_CONF: path.join(dataDir, "hsm/softhsm2.conf") } },
  );

describe("root ceremonies", () => {
  // The embedded database the ceremonies and the service share, initialised and migrated (initdb is slow; not what is tested here).
  beforeAll(() => copyMigratedPglite(dataDir));

  it("create-root makes the root key on the root token and prints the transcript", async () => {
    const r = await runCliInProcess(["ceremony", "create-root"], ceremonyEnv);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Key ceremony: create-root .* on token "offline-root"/);
    expect(r.stdout).toMatch(/ROOT CA\s+CN=hsm-ca Root CA/);
    expect(privateKeysOn("offline-root")).toMatch(/label:\s+hsm-ca\/root\//);
    const again = await runCliInProcess(["ceremony", "create-root"], ceremonyEnv);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/an active root exists already/);
  });

  it("sign-intermediate has the root certify an intermediate whose key is on the issuing token", async () => {
    const r = await runCliInProcess(["ceremony", "sign-intermediate"], ceremonyEnv);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Key ceremony: sign-intermediate/);
    expect(r.stdout).toMatch(/INTERMEDIATE CA/);
    expect(privateKeysOn("hsm-ca")).toMatch(/label:\s+hsm-ca\/intermediate\//);
    expect(privateKeysOn("hsm-ca")).not.toMatch(/hsm-ca\/root\//);
  });

  it("sign-root-crl publishes the root's CRL for the time asked", async () => {
    const r = await runCliInProcess(["ceremony", "sign-root-crl", "--next-update", "30d"], ceremonyEnv);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Published the root's CRL .* valid until/);
  });
});

describe("the service without the root token", () => {
  it("issues from the intermediate, serves the ceremony's root CRL, and refuses to rotate without the root", async () => {
    service = await startServiceWithCli(
      loadConfig({ HSM_CA_DATA_DIR: dataDir, HSM_CA_PROFILES_DIR: path.join(REPO, "profiles"), HSM_CA_HTTPS_PORT: "0", HSM_CA_HTTP_PORT: "0" }),
      createLogger("silent"),
    );
    const rootPem = await (await fetch(`${service.httpUrl}/ca/root.pem`)).text();
    const { createApiToken } = await import("../src/auth/api-tokens.ts");
    const token = (await createApiToken(service.ctx.store.db, { role: "admin" })).secret;
    const api = apiClient(service.httpsUrl, rootPem);
    const res = await api("POST", "/api/v1/certificates", { token, json: { csr: makeCsr({ san: "DNS:offline.example.test" }).csr, profile: "tls-server" } });
    expect(res.status, res.text).toBe(201);
    expect(verify(rootPem, res.body.chain, res.body.certificate).ok).toBe(true);

    const rootId = service.ctx.issuer().root.id;
    const crl = await fetchBytes(`${service.httpUrl}/crl/${rootId}.crl`);
    expect(crl.status).toBe(200);
    const text = await rp.crlText(crl.body);
    const nextUpdate = new Date(/Next Update: (.+)/.exec(text)![1]!);
    expect((nextUpdate.getTime() - Date.now()) / 86_400_000).toBeGreaterThan(29);
    expect((await rp.openssl(["crl", "-inform", "DER", "-in", rp.file("root.crl", crl.body), "-CAfile", rp.file("root.pem", rootPem), "-noout"])).out).toMatch(/verify OK/);

    // On PGlite the CLI runs inside the service, which has no root token: rotation must wait for a ceremony.
    const r = await runCliInProcess(["rotate"], { HSM_CA_DATA_DIR: dataDir });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(/root key is not available.*rotation needs the root/);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  });
});
