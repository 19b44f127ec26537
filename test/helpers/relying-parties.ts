import { execFile } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { REPO } from "./cli.ts";

/**
 * Independent relying parties for what hsm-ca issues: OpenSSL (with
 * -x509_strict), Go's crypto/x509 (it enforces name constraints) and
 * GnuTLS certtool. Each gets the same roots, untrusted intermediates and
 * leaf, and says whether it accepts the chain.
 */

const run = promisify(execFile);

export interface ChainInput {
  /** Trust anchors, PEM (each may hold several certificates). */
  roots: string[];
  /** Untrusted certificates between the leaf and a root, PEM, in any order. */
  intermediates: string[];
  leaf: string;
  /** The extended key usage the relying party asks for; "any" asks for none. */
  purpose?: "serverAuth" | "clientAuth" | "any";
}

export interface Verdict {
  ok: boolean;
  /** What the relying party printed: its reason when it refused. */
  detail: string;
}

export async function verifyWithAll(input: ChainInput): Promise<{ openssl: Verdict; go: Verdict; gnutls: Verdict }> {
  const [openssl, go, gnutls] = await Promise.all([verifyOpenssl(input), verifyGo(input), verifyGnutls(input)]);
  return { openssl, go, gnutls };
}

export async function verifyOpenssl(input: ChainInput): Promise<Verdict> {
  return withFiles(input, async (f) => {
    const purpose = { serverAuth: ["-purpose", "sslserver"], clientAuth: ["-purpose", "sslclient"], any: [] }[input.purpose ?? "any"];
    const untrusted = input.intermediates.length ? ["-untrusted", f.intermediates] : [];
    return verdictOf(run("openssl", ["verify", "-x509_strict", "-CAfile", f.roots, ...untrusted, ...purpose, f.leaf]), (out) => /: OK\s*$/.test(out));
  });
}

export async function verifyGo(input: ChainInput): Promise<Verdict> {
  const bin = await goVerifier();
  return withFiles(input, async (f) => {
    const eku = { serverAuth: "server", clientAuth: "client", any: "any" }[input.purpose ?? "any"];
    const intermediates = input.intermediates.length ? ["-intermediates", f.intermediates] : [];
    return verdictOf(run(bin, ["-roots", f.roots, ...intermediates, "-leaf", f.leaf, "-eku", eku]), (out) => out.trim() === "ok");
  });
}

export async function verifyGnutls(input: ChainInput): Promise<Verdict> {
  return withFiles(input, async (f) => {
    // certtool verifies the chain in --infile, leaf first, against --load-ca-certificate.
    const chain = path.join(path.dirname(f.leaf), "chain.pem");
    fs.writeFileSync(chain, [input.leaf, ...input.intermediates].map((p) => p.trim() + "\n").join(""));
    const purpose = { serverAuth: ["--verify-purpose", "1.3.6.1.5.5.7.3.1"], clientAuth: ["--verify-purpose", "1.3.6.1.5.5.7.3.2"], any: [] }[input.purpose ?? "any"];
    return verdictOf(
      run("certtool", ["--verify", "--load-ca-certificate", f.roots, "--infile", chain, ...purpose]),
      (out) => /Chain verification output: Verified\./.test(out) && !/Not verified/.test(out),
    );
  });
}

interface Files {
  roots: string;
  intermediates: string;
  leaf: string;
}

async function withFiles(input: ChainInput, fn: (f: Files) => Promise<Verdict>): Promise<Verdict> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hsm-ca-rp-"));
  try {
    const f = { roots: path.join(dir, "roots.pem"), intermediates: path.join(dir, "intermediates.pem"), leaf: path.join(dir, "leaf.pem") };
    const joined = (pems: string[]) => pems.map((p) => p.trim() + "\n").join("");
    fs.writeFileSync(f.roots, joined(input.roots));
    fs.writeFileSync(f.intermediates, joined(input.intermediates));
    fs.writeFileSync(f.leaf, input.leaf);
    return await fn(f);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Exit status 0 and the expected words mean accepted; anything else is the relying party's refusal, with its words. */
async function verdictOf(p: Promise<{ stdout: string; stderr: string }>, accepted: (out: string) => boolean): Promise<Verdict> {
  try {
    const { stdout, stderr } = await p;
    const out = `${stdout}${stderr}`;
    return { ok: accepted(out), detail: out.trim() };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return { ok: false, detail: `${e.stdout ?? ""}${e.stderr ?? ""}`.trim() || e.message };
  }
}

const GO_SOURCE = path.join(REPO, "test/fixtures/go-verify/main.go");

/** Builds test/fixtures/go-verify once per source version (Go's standard library only, no network). */
let goBuild: Promise<string> | undefined;
function goVerifier(): Promise<string> {
  goBuild ??= (async () => {
    const source = fs.readFileSync(GO_SOURCE);
    const hash = crypto.createHash("sha256").update(source).digest("hex").slice(0, 16);
    const dir = path.join(os.tmpdir(), `hsm-ca-go-verify-${hash}`);
    const bin = path.join(dir, "go-verify");
    if (fs.existsSync(bin)) return bin;
    fs.mkdirSync(dir, { recursive: true });
    // Built beside, then renamed: two test files building at once each get a whole binary.
    const partial = `${bin}.${process.pid}`;
    await run("go", ["build", "-o", partial, GO_SOURCE], {
      env: { ...process.env, GOCACHE: path.join(os.tmpdir(), "hsm-ca-go-cache"), GOPATH: path.join(os.tmpdir(), "hsm-ca-gopath"), GO111MODULE: "off", GOFLAGS: "" },
      timeout: 120_000,
    });
    fs.renameSync(partial, bin);
    return bin;
  })();
  return goBuild;
}
