import crypto from "node:crypto";
import fs from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { Background, freePort, hasCommand, run, waitForPort } from "./proc.ts";
import { log } from "./report.ts";

/**
 * step-ca (smallstep/certificates), the closest peer: a Go private CA with a
 * REST sign API and ACME, keys in software, a badger database.
 *
 * Debian packages its library (golang-github-smallstep-certificates-dev,
 * 0.19.0) but not the command, so the bench builds the command from the
 * source package into a cache directory outside the repository (nothing of
 * step-ca is committed): apt-get source, copy cmd/step-ca/main.go, drop the
 * imports of the cloud KMS/CAS back-ends Debian has no dependencies for,
 * and `go build` it in GOPATH mode against /usr/share/gocode. Run as root,
 * the bench installs what that needs (a deb-src line, golang-go, the -dev
 * package and its dependencies); otherwise it says what is missing and the
 * peer is skipped.
 *
 * The bench configures it itself, without the step CLI: a P-256 root and
 * intermediate made with openssl, ca.json with a badger database, a JWK
 * provisioner (whose one-time tokens, ES256 JWTs, are minted here with
 * node:crypto before the timed window) and an ACME provisioner.
 */

export const STEP_CA_CACHE = process.env.BENCH_STEPCA_CACHE ?? path.join(os.homedir(), ".cache", "hsm-ca-bench", "step-ca");
const SOURCE_PACKAGE = "golang-github-smallstep-certificates";
/** The back-ends cmd/step-ca/main.go imports whose dependencies Debian does not package. */
const MISSING_BACKENDS = ["kms/azurekms", "kms/cloudkms", "cas/cloudcas", "cas/vaultcas", "kms/yubikey"];
const DEB_SRC_FILE = "/etc/apt/sources.list.d/hsm-ca-bench-src.sources";
const JWK_PROVISIONER = "bench";
const ACME_PROVISIONER = "acme";

export interface StepCaBuild {
  binary: string;
  version: string;
}

const aptEnv = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };

function apt(args: string[], cwd?: string): boolean {
  const r = spawnSync("apt-get", ["-q", ...args], { cwd, env: aptEnv, encoding: "utf8", timeout: 600_000 });
  if (r.status !== 0) log(`step-ca: apt-get ${args.join(" ")} failed: ${(r.stderr ?? "").trim().split("\n").slice(-3).join(" / ")}`);
  return r.status === 0;
}

const devPackageInstalled = () => fs.existsSync("/usr/share/gocode/src/github.com/smallstep/certificates/authority");

/** Debian's main suite as a deb-src source, when no source line is configured yet. */
function ensureDebSrc(): void {
  const probe = spawnSync("apt-get", ["source", "--print-uris", "-q", SOURCE_PACKAGE], { encoding: "utf8", env: aptEnv });
  if (probe.status === 0 && probe.stdout.includes(".dsc")) return;
  const codename = spawnSync("sh", ["-c", ". /etc/os-release && echo $VERSION_CODENAME"], { encoding: "utf8" }).stdout.trim() || "bookworm";
  log(`step-ca: adding a deb-src line for Debian ${codename} main (${DEB_SRC_FILE})`);
  fs.writeFileSync(
    DEB_SRC_FILE,
    `# Added by hsm-ca's bench (scripts/bench/step-ca.ts): source packages, to build step-ca.\nTypes: deb-src\nURIs: http://deb.debian.org/debian\nSuites: ${codename}\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n`,
  );
  apt(["update"]);
}

/**
 * The step-ca binary, built once into STEP_CA_CACHE (about 40 s to a few
 * minutes on a busy machine); a string saying why not when it cannot be.
 */
export async function buildStepCa(): Promise<StepCaBuild | string> {
  try {
    return await build();
  } catch (err) {
    return `building step-ca failed: ${(err as Error).message.slice(0, 300)}`;
  }
}

async function build(): Promise<StepCaBuild | string> {
  const binary = path.join(STEP_CA_CACHE, "step-ca");
  if (!fs.existsSync(binary)) {
    const root = process.getuid?.() === 0;
    if (!hasCommand("go") || !devPackageInstalled() || !hasCommand("dpkg-source")) {
      if (!root) return "step-ca is not built and building it needs `apt-get install golang-go golang-github-smallstep-certificates-dev dpkg-dev` as root";
      log("step-ca: installing golang-go, golang-github-smallstep-certificates-dev and dpkg-dev");
      if (!apt(["install", "-y", "golang-go", "golang-github-smallstep-certificates-dev", "dpkg-dev"])) {
        apt(["update"]);
        if (!apt(["install", "-y", "golang-go", "golang-github-smallstep-certificates-dev", "dpkg-dev"])) return "could not install golang-go / golang-github-smallstep-certificates-dev";
      }
    }
    fs.mkdirSync(STEP_CA_CACHE, { recursive: true });
    let source = fs.readdirSync(STEP_CA_CACHE).find((d) => d.startsWith(`${SOURCE_PACKAGE}-`) && fs.statSync(path.join(STEP_CA_CACHE, d)).isDirectory());
    if (!source) {
      if (root) ensureDebSrc();
      log(`step-ca: apt-get source ${SOURCE_PACKAGE} into ${STEP_CA_CACHE}`);
      if (!apt(["source", SOURCE_PACKAGE], STEP_CA_CACHE)) return `apt-get source ${SOURCE_PACKAGE} failed (no deb-src line? run the bench as root once, or add one)`;
      source = fs.readdirSync(STEP_CA_CACHE).find((d) => d.startsWith(`${SOURCE_PACKAGE}-`) && fs.statSync(path.join(STEP_CA_CACHE, d)).isDirectory());
      if (!source) return `apt-get source ${SOURCE_PACKAGE} left no source directory in ${STEP_CA_CACHE}`;
    }
    const main = fs.readFileSync(path.join(STEP_CA_CACHE, source, "cmd/step-ca/main.go"), "utf8");
    const patched = main
      .split("\n")
      .filter((line) => !MISSING_BACKENDS.some((b) => line.includes(`"github.com/smallstep/certificates/${b}"`)))
      .join("\n");
    const pkg = path.join(STEP_CA_CACHE, "gopath/src/hsmcabench/step-ca");
    fs.mkdirSync(pkg, { recursive: true });
    fs.writeFileSync(path.join(pkg, "main.go"), patched);
    log(`step-ca: go build of ${source}/cmd/step-ca (GOPATH mode against /usr/share/gocode; a minute or more)`);
    const t0 = performance.now();
    const b = await run(
      "go",
      ["build", "-o", `${binary}.tmp`, "hsmcabench/step-ca"],
      {
        cwd: STEP_CA_CACHE,
        env: { ...process.env, GO111MODULE: "off", GOPATH: `${path.join(STEP_CA_CACHE, "gopath")}:/usr/share/gocode`, GOCACHE: path.join(STEP_CA_CACHE, "gocache"), GOFLAGS: "" },
        timeoutMs: 900_000,
        check: false,
      },
    );
    if (b.code !== 0) return `go build of step-ca failed: ${b.stderr.trim().split("\n").slice(-4).join(" / ")}`;
    fs.renameSync(`${binary}.tmp`, binary);
    log(`step-ca: built in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  // The binary calls itself 0000000-dev: name the Debian source it was built from instead.
  const dsc = fs.readdirSync(STEP_CA_CACHE).find((f) => f.endsWith(".dsc"));
  return { binary, version: dsc ? `built from Debian's ${dsc.replace(/\.dsc$/, "").replace("_", " ")}` : "built from Debian's source package" };
}

export interface StepCa {
  url: string;
  port: number;
  rootPem: string;
  intermediatePem: string;
  /** The ACME directory (ACME provisioner). */
  acmeDirectoryPath: string;
  pid: number;
  /** One-time tokens for POST /1.0/sign, one per name (JWTs signed with the JWK provisioner's key). */
  tokens(names: string[]): string[];
  /** A body for POST /1.0/sign: the CSR (its CN and SAN = `name`) with a fresh token for `name`. */
  signBody(csrPem: string, name: string, token: string): string;
  stop(): Promise<void>;
  output(): string;
  /** The `error` field of the last few requests it answered with a 5xx (from its request log). */
  serverErrors(): string[];
}

const b64u = (b: Buffer | string) => Buffer.from(b).toString("base64url");

/** Starts step-ca on a free loopback port with a fresh PKI and database under `dir`. */
export async function startStepCa(build: StepCaBuild, dir: string, opts: { resolver?: string } = {}): Promise<StepCa> {
  fs.mkdirSync(dir, { recursive: true });
  const ossl = (args: string[]) => run("openssl", args, { cwd: dir, check: true });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await ossl(["req", "-x509", ...ec, "-keyout", "root-key.pem", "-out", "root.pem", "-subj", "/CN=step-ca bench root", "-days", "2",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  await ossl(["req", ...ec, "-keyout", "intermediate-key.pem", "-out", "intermediate.csr", "-subj", "/CN=step-ca bench intermediate"]);
  fs.writeFileSync(path.join(dir, "intermediate.ext"), "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n");
  await ossl(["x509", "-req", "-in", "intermediate.csr", "-CA", "root.pem", "-CAkey", "root-key.pem", "-CAcreateserial", "-days", "2", "-extfile", "intermediate.ext", "-out", "intermediate.pem"]);

  // The JWK provisioner's key: the public half in ca.json, the private half signs the tokens here.
  const { privateKey, publicKey } = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
  const pub = publicKey.export({ format: "jwk" }) as { kty: string; crv: string; x: string; y: string };
  const kid = b64u(crypto.createHash("sha256").update(JSON.stringify({ crv: pub.crv, kty: pub.kty, x: pub.x, y: pub.y })).digest());

  const port = await freePort();
  const config = {
    root: path.join(dir, "root.pem"),
    crt: path.join(dir, "intermediate.pem"),
    key: path.join(dir, "intermediate-key.pem"),
    address: `127.0.0.1:${port}`,
    dnsNames: ["127.0.0.1"],
    logger: { format: "text" },
    db: { type: "badgerv2", dataSource: path.join(dir, "db") },
    authority: {
      provisioners: [
        { type: "JWK", name: JWK_PROVISIONER, key: { ...pub, use: "sig", alg: "ES256", kid } },
        { type: "ACME", name: ACME_PROVISIONER },
      ],
    },
    tls: { cipherSuites: ["TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"], minVersion: 1.2, maxVersion: 1.3, renegotiation: false },
  };
  fs.writeFileSync(path.join(dir, "ca.json"), JSON.stringify(config, null, 2));
  const args = [path.join(dir, "ca.json"), ...(opts.resolver ? ["--resolver", opts.resolver] : [])];
  const server = Background.start("step-ca", build.binary, args, { cwd: dir, env: { ...process.env, STEPPATH: dir, HOME: dir } });
  // Its request log is long (every certificate in full): keep only why 5xx answers failed.
  const errors: string[] = [];
  let partial = "";
  const scan = (d: Buffer) => {
    const lines = (partial + d.toString("utf8")).split("\n");
    partial = lines.pop()!;
    for (const l of lines) {
      if (!/ status=5\d\d /.test(l)) continue;
      errors.push(/ error="((?:[^"\\]|\\.)*)"/.exec(l)?.[1] ?? l.slice(0, 300));
      if (errors.length > 20) errors.shift();
    }
  };
  server.child.stdout?.on("data", scan);
  server.child.stderr?.on("data", scan);
  try {
    await waitForPort(port, 60_000);
  } catch (err) {
    await server.stop();
    throw new Error(`step-ca did not start: ${(err as Error).message}: ${server.output.join("").slice(-1500)}`);
  }
  const audience = "https://127.0.0.1/1.0/sign";
  const header = b64u(JSON.stringify({ alg: "ES256", kid, typ: "JWT" }));
  return {
    url: `https://127.0.0.1:${port}`,
    port,
    rootPem: fs.readFileSync(path.join(dir, "root.pem"), "utf8"),
    intermediatePem: fs.readFileSync(path.join(dir, "intermediate.pem"), "utf8"),
    acmeDirectoryPath: `/acme/${ACME_PROVISIONER}/directory`,
    pid: server.child.pid!,
    tokens(names) {
      const now = Math.floor(Date.now() / 1000);
      return names.map((sub) => {
        const payload = b64u(JSON.stringify({ iss: JWK_PROVISIONER, aud: audience, sub, sans: [sub], iat: now, nbf: now - 30, exp: now + 600, jti: crypto.randomBytes(16).toString("hex") }));
        const sig = crypto.sign("sha256", Buffer.from(`${header}.${payload}`), { key: privateKey, dsaEncoding: "ieee-p1363" });
        return `${header}.${payload}.${b64u(sig)}`;
      });
    },
    signBody: (csrPem, _name, token) => JSON.stringify({ csr: csrPem, ott: token, notAfter: "1h" }),
    stop: () => server.stop(),
    output: () => server.output.join(""),
    serverErrors: () => [...errors],
  };
}

/** POST /1.0/sign once, trusting the bench root: the leaf and its issuer as step-ca answered them. */
export function stepCaSign(ca: StepCa, body: string): Promise<{ status: number; crt?: string; ca?: string; text: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(`${ca.url}/1.0/sign`, { method: "POST", ca: ca.rootPem, headers: { "content-type": "application/json" }, timeout: 20_000 }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (text += d));
      res.on("end", () => {
        try {
          const j = JSON.parse(text) as { crt?: string; ca?: string };
          resolve({ status: res.statusCode!, crt: j.crt, ca: j.ca, text });
        } catch {
          resolve({ status: res.statusCode!, text });
        }
      });
    });
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("step-ca sign timed out")));
    req.end(body);
  });
}
