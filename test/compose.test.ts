import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import YAML from "yaml";
import { loadConfig } from "../src/config.ts";
import { REPO, runCli } from "./helpers/cli.ts";
import { tempDir } from "./helpers/openssl.ts";
import { createTestDatabase } from "./helpers/postgres.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

/**
 * compose.yaml, its PIN-as-secret override and the image's scripts. No
 * Docker engine runs on this machine, so the files are checked as data
 * (structure, healthchecks, secrets as files, no secret values), and the
 * parts that run inside the containers are run here directly: the
 * healthcheck command against a real hsm-ca, the entrypoint that reads the
 * database password secret, and the SoftHSM2 token set-up followed by the
 * real CLI in "another PKCS#11 module" mode with the PIN from a file.
 */

const read = (p: string) => fs.readFileSync(path.join(REPO, p), "utf8");
const compose = YAML.parse(read("compose.yaml"));
const override = YAML.parse(read("deploy/compose/hsm-pin-secret.yaml"));
const SECRETISH = /PASSWORD|PASSPHRASE|SECRET|(^|_)PIN($|_)|(^|_)TOKEN($|_FILE$)/;

/** Compose's ${NAME:-default} interpolation with nothing set in the environment. */
function interpolate(value: string): string {
  return value.replace(/\$\{([A-Z0-9_]+)(:-([^}]*))?\}/g, (_m, _name, _d, fallback) => fallback ?? "");
}

function environmentOf(service: any): Record<string, string> {
  const env = service.environment ?? {};
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, interpolate(String(v))]));
}

let t: TestService | undefined;
afterAll(async () => {
  await t?.stop();
});

describe("compose.yaml", () => {
  it("runs postgres and hsm-ca, hsm-ca once postgres is healthy, with health checked on /readyz", () => {
    expect(Object.keys(compose.services).sort()).toEqual(["hsm-ca", "postgres"]);
    const { postgres, "hsm-ca": ca } = compose.services;
    expect(postgres.healthcheck.test.join(" ")).toContain("pg_isready -U hsmca -d hsmca");
    expect(ca.depends_on).toEqual({ postgres: { condition: "service_healthy" } });
    expect(ca.healthcheck.test[0]).toBe("CMD");
    expect(ca.healthcheck.test.join(" ")).toContain("http://127.0.0.1:8080/readyz");
    expect(ca.build).toEqual({ context: ".", dockerfile: "scripts/Dockerfile" });
    expect(ca.ports).toEqual(["127.0.0.1:8443:8443", "127.0.0.1:8080:8080"]);
  });

  it("keeps the token and the database in named volumes, the token where hsm-ca's data directory is", () => {
    expect(Object.keys(compose.volumes).sort()).toEqual(["hsm-ca-data", "postgres-data"]);
    const ca = compose.services["hsm-ca"];
    expect(ca.volumes).toEqual(["hsm-ca-data:/app/data"]);
    expect(environmentOf(ca).HSM_CA_DATA_DIR).toBe("/app/data");
    expect(compose.services.postgres.volumes).toEqual(["postgres-data:/var/lib/postgresql/data"]);
  });

  it("takes every secret from a file and holds no secret value", () => {
    expect(compose.secrets).toEqual({ "postgres-password": { file: "./secrets/postgres-password" } });
    for (const doc of [compose, override]) {
      for (const [name, service] of Object.entries<any>(doc.services)) {
        for (const [key, value] of Object.entries(environmentOf(service))) {
          if (SECRETISH.test(key)) {
            expect(key, `${name}: ${key}`).toMatch(/_FILE$/);
            expect(value, `${name}: ${key}`).toMatch(/^\/run\/secrets\/[a-z-]+$/);
            expect(service.secrets, `${name} mounts ${value}`).toContain(path.basename(value));
          }
          if (/^[a-z]+:\/\//.test(value)) expect(new URL(value).password, `${name}: ${key} has a password`).toBe("");
        }
      }
      for (const secret of Object.values<any>(doc.secrets)) expect(secret.file).toMatch(/^\.\/secrets\/[a-z-]+$/);
    }
    expect(environmentOf(compose.services.postgres)).toEqual({ POSTGRES_USER: "hsmca", POSTGRES_DB: "hsmca", POSTGRES_PASSWORD_FILE: "/run/secrets/postgres-password" });
    expect(read("compose.yaml")).not.toMatch(/change-me|POSTGRES_PASSWORD:/);
    expect(read(".gitignore")).toMatch(/^secrets\/$/m);
    expect(read(".dockerignore")).toMatch(/^secrets\/$/m);
  });

  it("gives hsm-ca settings it accepts: the embedded token (its PINs generated in the volume), or with the override SoftHSM2 as a module with the PIN from a secret", () => {
    const base = environmentOf(compose.services["hsm-ca"]);
    const { PGPASSWORD_FILE: _pg, ...hsmCaSettings } = base;
    const config = loadConfig(hsmCaSettings);
    expect(config.hsm.embedded).toBe(true);
    expect(config.hsm.pinSource).toEqual({ file: "/app/data/hsm/user.pin" });
    expect(config.databaseUrl).toBe("postgres://hsmca@postgres:5432/hsmca");
    expect(config.publicHttpUrl).toBe("http://localhost:8080");
    expect(config.serverNames).toEqual(["localhost", "127.0.0.1", "hsm-ca"]);

    const merged = { ...hsmCaSettings, ...environmentOf(override.services["hsm-ca"]) };
    const { SOFTHSM2_CONF: _conf, ...withModule } = merged;
    const external = loadConfig(withModule);
    expect(external.hsm.embedded).toBe(false);
    expect(external.hsm.pinSource).toEqual({ file: "/run/secrets/hsm-pin" });
    expect(external.autoInit).toBe(true);
    expect(override.services["hsm-ca"].depends_on).toEqual({ "hsm-token-init": { condition: "service_completed_successfully" } });
    expect(override.services["hsm-token-init"].volumes).toEqual(compose.services["hsm-ca"].volumes);
    expect(environmentOf(override.services["hsm-token-init"]).SOFTHSM2_CONF).toBe(merged.SOFTHSM2_CONF);
  });

  it("builds an image with everything the service and the controller run, as the unprivileged user", () => {
    const dockerfile = read("scripts/Dockerfile");
    for (const copied of ["scripts/hsm-ca.mjs", "scripts/cert-manager-controller.mjs", "src/", "drizzle/", "profiles/", "tsconfig.json", "deploy/container/hsm-ca-entrypoint", "deploy/container/hsm-ca", "deploy/container/softhsm-init-token"]) {
      expect(dockerfile, copied).toMatch(new RegExp(`^COPY .*${copied.replace(/[./]/g, "\\$&")}`, "m"));
      expect(fs.existsSync(path.join(REPO, copied)), copied).toBe(true);
    }
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/^ENTRYPOINT \["hsm-ca-entrypoint"\]$/m);
    expect(dockerfile).toMatch(/^CMD \["node", "scripts\/hsm-ca.mjs", "serve"\]$/m);
    expect(read(".dockerignore")).toMatch(/^data\/$/m);
    // tsx must be a runtime dependency: the image installs without dev dependencies.
    const pkg = JSON.parse(read("package.json"));
    expect(pkg.dependencies.tsx).toBeDefined();
    expect(pkg.dependencies["@kubernetes/client-node"]).toBeDefined();
  });
});

describe("what runs inside the containers, run here", () => {
  it("the healthcheck command exits 0 against a ready hsm-ca and 1 when nothing answers", async () => {
    t = await startTestService("postgres");
    const command: string[] = compose.services["hsm-ca"].healthcheck.test.slice(1);
    const port = new URL(t.service.httpUrl).port;
    // Asynchronously: the service answers from this very process.
    const run = (p: string) =>
      new Promise<number | null>((resolve) => {
        const child = spawn(command[0] === "node" ? process.execPath : command[0]!, command.slice(1).map((a) => a.replace(":8080/", `:${p}/`)));
        const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        child.on("close", (code) => (clearTimeout(timer), resolve(code)));
      });
    expect(await run(port)).toBe(0);
    expect(await run("9")).toBe(1);
  });

  it("the entrypoint hands the database password from its secret file to the process as PGPASSWORD, and nowhere else", () => {
    const dir = tempDir("secrets-");
    const file = path.join(dir, "postgres-password");
    fs.writeFileSync(file, "s3cret-db-password\n");
    const entrypoint = path.join(REPO, "deploy/container/hsm-ca-entrypoint");
    const r = spawnSync("sh", [entrypoint, "sh", "-c", 'printf "%s|%s" "$PGPASSWORD" "${PGPASSWORD_FILE:-unset}"'], {
      env: { PATH: process.env.PATH, PGPASSWORD_FILE: file },
      encoding: "utf8",
    });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe("s3cret-db-password|unset");

    const missing = spawnSync("sh", [entrypoint, "true"], { env: { PATH: process.env.PATH, PGPASSWORD_FILE: path.join(dir, "absent") }, encoding: "utf8" });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/^hsm-ca: cannot read PGPASSWORD_FILE .*absent/);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("softhsm-init-token creates the token from PIN files once, and hsm-ca then creates and uses its CA with the PIN read from the file", async () => {
    const dir = tempDir("compose-pin-");
    const pin = "pin-7f3a9c21e4b6";
    const soPin = "so-pin-2d8e4f6a0b1c";
    fs.mkdirSync(path.join(dir, "secrets"));
    fs.writeFileSync(path.join(dir, "secrets/hsm-pin"), pin);
    fs.writeFileSync(path.join(dir, "secrets/hsm-so-pin"), soPin);
    const tokenEnv = {
      PATH: process.env.PATH ?? "",
      SOFTHSM2_CONF: path.join(dir, "data/softhsm/softhsm2.conf"),
      HSM_CA_TOKEN_LABEL: "hsm-ca",
      HSM_CA_PIN_FILE: path.join(dir, "secrets/hsm-pin"),
      HSM_SO_PIN_FILE: path.join(dir, "secrets/hsm-so-pin"),
    };
    const init = (extra: Record<string, string> = {}) =>
      spawnSync("sh", [path.join(REPO, "deploy/container/softhsm-init-token")], { env: { ...tokenEnv, ...extra }, encoding: "utf8" });
    const first = init();
    expect(first.stderr).toBe("");
    expect(first.stdout).toBe('SoftHSM2 token "hsm-ca" created\n');
    expect(init().stdout).toBe('SoftHSM2 token "hsm-ca" exists\n');
    expect((fs.statSync(path.join(dir, "data/softhsm/tokens")).mode & 0o777).toString(8)).toBe("700");

    const db = await createTestDatabase();
    try {
      const env = {
        HSM_CA_DATA_DIR: path.join(dir, "data"),
        HSM_CA_PROFILES_DIR: path.join(REPO, "profiles"),
        DATABASE_URL: db.url,
        HSM_CA_PKCS11_MODULE: "/usr/lib/softhsm/libsofthsm2.so",
        SOFTHSM2_CONF: tokenEnv.SOFTHSM2_CONF,
        HSM_CA_TOKEN_LABEL: "hsm-ca",
        HSM_CA_PIN_FILE: tokenEnv.HSM_CA_PIN_FILE,
      };
      const created = await runCli(["init"], env);
      expect(created.stderr).toBe("");
      expect(created.code).toBe(0);
      const status = await runCli(["status"], env);
      expect(status.code).toBe(0);
      expect(status.stdout).toMatch(/neverExtractable=true/);
      for (const out of [first.stdout, created.stdout, created.stderr, status.stdout, status.stderr]) {
        expect(out).not.toContain(pin);
        expect(out).not.toContain(soPin);
      }
    } finally {
      await db.drop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
