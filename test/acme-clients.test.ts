import fs from "node:fs";
import path from "node:path";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDnsServer, type DnsServer } from "./helpers/challtestsrv.ts";
import { REPO, runCliInProcess } from "./helpers/cli.ts";
import { tempDir, verify } from "./helpers/openssl.ts";
import { freePort } from "./helpers/ports.ts";
import { run } from "./helpers/run.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

/**
 * certbot and lego, Debian's packages, unchanged, against the service on
 * loopback: given the directory URL, the root as trust anchor and a local
 * challenge port, they register, order, renew and revoke. Names resolve
 * through a real DNS server (pebble-challtestsrv) that also serves dns-01.
 */
let t: TestService;
let dns: DnsServer;
let work: string;
let rootFile: string;
let adminToken: string;
let http01Port: number;
let tlsAlpnPort: number;
let directory: string;
let eabDirectory: string;

beforeAll(async () => {
  dns = await startDnsServer();
  work = tempDir("hsmca-acme-clients-");
  http01Port = await freePort();
  tlsAlpnPort = await freePort();
  const acmeProfiles = path.join(work, "acme-profiles");
  fs.mkdirSync(acmeProfiles);
  const defaultProfile = fs.readFileSync(path.join(REPO, "profiles/acme/default.yaml"), "utf8");
  fs.writeFileSync(path.join(acmeProfiles, "default.yaml"), defaultProfile);
  fs.writeFileSync(
    path.join(acmeProfiles, "partners.yaml"),
    defaultProfile.replace("name: default", "name: partners").replace("externalAccountRequired: false", "externalAccountRequired: true"),
  );
  t = await startTestService("postgres", {
    HSM_CA_ACME_PROFILES_DIR: acmeProfiles,
    HSM_CA_ACME_RESOLVERS: dns.address,
    HSM_CA_ACME_HTTP01_PORT: String(http01Port),
    HSM_CA_ACME_TLSALPN01_PORT: String(tlsAlpnPort),
  });
  rootFile = path.join(work, "root.pem");
  fs.writeFileSync(rootFile, t.rootPem);
  adminToken = await t.token("admin");
  const port = new URL(t.service.httpsUrl).port;
  directory = `https://localhost:${port}/acme/directory`;
  eabDirectory = `https://localhost:${port}/acme/partners/directory`;
});

afterAll(async () => {
  await t?.stop();
  dns?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

async function eabKey(): Promise<{ kid: string; hmac: string }> {
  const r = await runCliInProcess(["acme", "eab", "create", "--directory", "partners"], t.env);
  expect(r.code).toBe(0);
  return { kid: /^kid: (\S+)$/m.exec(r.stdout)![1]!, hmac: /^hmac: (\S+)$/m.exec(r.stdout)![1]! };
}

/** The stored record of a certificate, as an admin sees it over REST. */
async function stored(certPem: string) {
  const serial = new x509.X509Certificate(certPem).serialNumber.toLowerCase();
  const res = await t.api("GET", `/api/v1/certificates/${serial}`, { token: adminToken });
  expect(res.status).toBe(200);
  return res.body;
}

function splitChain(pem: string): { leaf: string; chain: string } {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g)!;
  return { leaf: blocks[0]!, chain: blocks.slice(1).join("") };
}

describe("certbot", { timeout: 150_000 }, () => {
  const dir = () => path.join(work, "certbot");
  const dirs = () => ["--config-dir", `${dir()}/config`, "--work-dir", `${dir()}/work`, "--logs-dir", `${dir()}/logs`];
  const certbot = (args: string[]) => run("certbot", [...args, ...dirs()], { env: { REQUESTS_CA_BUNDLE: rootFile } });
  const live = (name: string, file: string) => fs.readFileSync(path.join(dir(), "config/live", name, file), "utf8");

  it("registers and obtains a certificate with http-01 (standalone)", async () => {
    const r = await certbot([
      "certonly", "--standalone", "--non-interactive", "--agree-tos", "-m", "admin@example.test",
      "--server", directory, "--http-01-port", String(http01Port), "--http-01-address", "127.0.0.1",
      "-d", "cb.example.test", "-d", "www.cb.example.test", "--key-type", "ecdsa", "--elliptic-curve", "secp256r1",
    ]);
    expect(r.output).toMatch(/Successfully received certificate/);
    expect(r.code).toBe(0);
    const v = verify(t.rootPem, live("cb.example.test", "chain.pem"), live("cb.example.test", "cert.pem"), ["-x509_strict", "-purpose", "sslserver"]);
    expect(v.ok).toBe(true);
    const record = await stored(live("cb.example.test", "cert.pem"));
    expect(record.profile).toBe("tls-server");
    expect(record.sans.sort()).toEqual(["dns:cb.example.test", "dns:www.cb.example.test"]);
  });

  it("renews, getting a new certificate that verifies", async () => {
    const before = live("cb.example.test", "cert.pem");
    // Without a terminal certbot renew sleeps up to 8 minutes first, unless told not to.
    const r = await certbot(["renew", "--cert-name", "cb.example.test", "--force-renewal", "--non-interactive", "--no-random-sleep-on-renew"]);
    expect(r.output).toMatch(/fullchain\.pem \(success\)/);
    const after = live("cb.example.test", "cert.pem");
    expect(after).not.toBe(before);
    expect(verify(t.rootPem, live("cb.example.test", "chain.pem"), after).ok).toBe(true);
  });

  it("revokes with a reason, which the CA records", async () => {
    const certPath = path.join(dir(), "config/live/cb.example.test/cert.pem");
    const r = await certbot(["revoke", "--non-interactive", "--cert-path", certPath, "--reason", "keycompromise", "--no-delete-after-revoke", "--server", directory]);
    expect(r.output).toMatch(/successfully revoked/);
    const record = await stored(fs.readFileSync(certPath, "utf8"));
    expect(record.status).toBe("revoked");
  });

  it("registers with External Account Binding where the directory requires it", async () => {
    const eabDir = path.join(work, "certbot-eab");
    const args = (extra: string[]) => [
      "register", "--non-interactive", "--agree-tos", "-m", "eab@example.test", "--server", eabDirectory,
      "--config-dir", `${eabDir}/config`, "--work-dir", `${eabDir}/work`, "--logs-dir", `${eabDir}/logs`, ...extra,
    ];
    const refused = await run("certbot", args([]), { env: { REQUESTS_CA_BUNDLE: rootFile } });
    expect(refused.code).not.toBe(0);
    expect(refused.output).toMatch(/requires External Account Binding|externalAccountRequired|eab-kid/i);
    const { kid, hmac } = await eabKey();
    const ok = await run("certbot", args(["--eab-kid", kid, "--eab-hmac-key", hmac]), { env: { REQUESTS_CA_BUNDLE: rootFile } });
    expect(ok.output).toMatch(/Account registered/);
    expect(ok.code).toBe(0);
  });
});

describe("lego", { timeout: 150_000 }, () => {
  const legoPath = () => path.join(work, "lego");
  const lego = (args: string[], env: Record<string, string> = {}) =>
    run("lego", ["--server", directory, "--accept-tos", "--email", "admin@example.test", "--path", legoPath(), "--key-type", "ec256", ...args], {
      env: { LEGO_CA_CERTIFICATES: rootFile, ...env },
      cwd: work, // lego creates ./.lego on --help; keep it out of the repository
    });
  const cert = (name: string) => fs.readFileSync(path.join(legoPath(), "certificates", `${name}.crt`), "utf8");

  it("obtains a certificate with http-01", async () => {
    const r = await lego(["--http", "--http.port", `127.0.0.1:${http01Port}`, "-d", "lego.example.test", "run"]);
    expect(r.output).toMatch(/Server responded with a certificate/);
    const { leaf, chain } = splitChain(cert("lego.example.test"));
    expect(verify(t.rootPem, chain, leaf, ["-x509_strict"]).ok).toBe(true);
  });

  it("obtains a certificate with tls-alpn-01", async () => {
    const r = await lego(["--tls", "--tls.port", `127.0.0.1:${tlsAlpnPort}`, "-d", "alpn.example.test", "run"]);
    expect(r.output).toMatch(/Server responded with a certificate/);
    const { leaf, chain } = splitChain(cert("alpn.example.test"));
    expect(verify(t.rootPem, chain, leaf).ok).toBe(true);
  });

  it("obtains a wildcard certificate with dns-01 through the DNS server", async () => {
    const hook = path.join(work, "dns-hook.sh");
    fs.writeFileSync(
      hook,
      `#!/bin/sh\ncase "$1" in\n  present) curl -s -d "{\\"host\\":\\"$2\\",\\"value\\":\\"$3\\"}" ${dns.managementUrl}/set-txt ;;\n  cleanup) curl -s -d "{\\"host\\":\\"$2\\"}" ${dns.managementUrl}/clear-txt ;;\nesac\n`,
      { mode: 0o755 },
    );
    const r = await lego(["--dns", "exec", "--dns.resolvers", dns.address, "--dns.disable-cp", "-d", "dns.example.test", "-d", "*.dns.example.test", "run"], {
      EXEC_PATH: hook,
      EXEC_SEQUENCE_INTERVAL: "1", // lego waits 60 s between two records of one name by default
    });
    expect(r.output, r.output).toMatch(/Server responded with a certificate/);
    const { leaf, chain } = splitChain(cert("dns.example.test"));
    expect(verify(t.rootPem, chain, leaf).ok).toBe(true);
    expect((await stored(leaf)).sans.sort()).toEqual(["dns:*.dns.example.test", "dns:dns.example.test"]);
  });

  it("renews and revokes", async () => {
    const before = cert("lego.example.test");
    const renewed = await lego(["--http", "--http.port", `127.0.0.1:${http01Port}`, "-d", "lego.example.test", "renew", "--days", "9999", "--no-random-sleep"]);
    expect(renewed.output).toMatch(/Server responded with a certificate/);
    const after = cert("lego.example.test");
    expect(after).not.toBe(before);
    const revoked = await lego(["-d", "lego.example.test", "revoke", "--reason", "4"]);
    expect(revoked.output).toMatch(/Certificate was revoked/);
    expect((await stored(splitChain(after).leaf)).status).toBe("revoked");
  });

  it("registers with External Account Binding", async () => {
    const { kid, hmac } = await eabKey();
    const r = await run(
      "lego",
      ["--server", eabDirectory, "--accept-tos", "--email", "eab@example.test", "--path", path.join(work, "lego-eab"), "--key-type", "ec256",
        "--eab", "--kid", kid, "--hmac", hmac, "--http", "--http.port", `127.0.0.1:${http01Port}`, "-d", "partner.example.test", "run"],
      { env: { LEGO_CA_CERTIFICATES: rootFile }, cwd: work },
    );
    expect(r.output).toMatch(/Server responded with a certificate/);
  });
});
