import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/** Real openssl, as a user would run it. */
export function openssl(args: string[], input?: string): string {
  return execFileSync("openssl", args, { input, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
}

export function tempDir(prefix = "hsmca-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export type KeySpec = "ec-p256" | "ec-p384" | "ec-p521" | "secp256k1" | "rsa-1024" | "rsa-2048" | "rsa-3072" | "ed25519" | "ed448";

const keyCache = new Map<KeySpec, string>();

/** A private key in PEM; RSA keys are cached per process because they are slow to make. */
export function makeKey(spec: KeySpec): string {
  const cached = keyCache.get(spec);
  if (cached) return cached;
  const args: Record<KeySpec, string[]> = {
    "ec-p256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "ec-p384": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
    "ec-p521": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"],
    secp256k1: ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:secp256k1"],
    "rsa-1024": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
    "rsa-2048": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    "rsa-3072": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"],
    ed25519: ["-algorithm", "ED25519"],
    ed448: ["-algorithm", "ED448"],
  };
  const pem = openssl(["genpkey", ...args[spec]]);
  if (spec.startsWith("rsa")) keyCache.set(spec, pem);
  return pem;
}

export interface CsrOptions {
  key?: KeySpec;
  keyPem?: string;
  /** openssl -subj form, e.g. "/CN=app.example.test/O=Example"; "/" for an empty subject. */
  subject?: string;
  /** openssl subjectAltName form, e.g. "DNS:a.example.test,IP:127.0.0.1". */
  san?: string;
}

export function makeCsr(opts: CsrOptions = {}): { csr: string; keyPem: string } {
  const dir = tempDir("csr-");
  const keyPem = opts.keyPem ?? makeKey(opts.key ?? "ec-p256");
  fs.writeFileSync(path.join(dir, "key.pem"), keyPem);
  const args = ["req", "-new", "-key", path.join(dir, "key.pem"), "-subj", opts.subject ?? "/CN=app.example.test"];
  if (opts.san) args.push("-addext", `subjectAltName=${opts.san}`);
  const csr = openssl(args);
  fs.rmSync(dir, { recursive: true, force: true });
  return { csr, keyPem };
}

/** openssl verify's exit code and output, for a leaf, its chain and the root. */
export function verify(rootPem: string, chainPem: string, certPem: string, extra: string[] = []): { ok: boolean; output: string } {
  const dir = tempDir("verify-");
  const f = (name: string, body: string) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, body);
    return p;
  };
  const r = spawnSync(
    "openssl",
    ["verify", ...extra, "-CAfile", f("root.pem", rootPem), "-untrusted", f("chain.pem", chainPem), f("cert.pem", certPem)],
    { encoding: "utf8" },
  );
  fs.rmSync(dir, { recursive: true, force: true });
  return { ok: r.status === 0, output: r.stdout + r.stderr };
}

export function x509Text(pem: string): string {
  return openssl(["x509", "-noout", "-text"], pem);
}
