import { execFile } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { REPO } from "./cli.ts";

/**
 * Independent relying parties for what hsm-ca issues: OpenSSL (with
 * -x509_strict), Go's crypto/x509 (it enforces name constraints), GnuTLS
 * certtool and NSS certutil. Each gets the same roots, untrusted
 * intermediates and leaf, and says whether it accepts the chain; CRLs and
 * OCSP responses likewise. (relying-party.ts, singular, is the older
 * openssl-only helper with CRL and OCSP fetching that earlier tests use;
 * new chain checks belong here.)
 */

const run = promisify(execFile);

export interface ChainInput {
  /** Trust anchors, PEM (each may hold several certificates). */
  roots: string[];
  /** Untrusted certificates between the leaf and a root, PEM, in any order. */
  intermediates: string[];
  leaf: string;
  /**
   * The extended key usage the relying party asks for; "any" asks for none
   * (NSS always asks for one: it accepts "any" when one of SSL server, SSL
   * client or object signing validates). OpenSSL 3.0 has no code-signing
   * purpose: it checks codeSigning chains without one. NSS validates object
   * signing only below CAs marked for it (a Netscape cert type or a
   * codeSigning EKU on the CA), which hsm-ca's CAs are not: it refuses them.
   */
  purpose?: Purpose;
}

export type Purpose = "serverAuth" | "clientAuth" | "codeSigning" | "any";

export interface Verdict {
  ok: boolean;
  /** What the relying party printed: its reason when it refused. */
  detail: string;
}

export interface Verdicts {
  openssl: Verdict;
  go: Verdict;
  gnutls: Verdict;
  nss: Verdict;
}

export async function verifyWithAll(input: ChainInput): Promise<Verdicts> {
  const [openssl, go, gnutls, nss] = await Promise.all([verifyOpenssl(input), verifyGo(input), verifyGnutls(input), verifyNss(input)]);
  return { openssl, go, gnutls, nss };
}

/** The relying parties that refused, with their reasons: empty when all accepted. */
export function refusals(v: Verdicts): string[] {
  return (["openssl", "go", "gnutls", "nss"] as const).filter((name) => !v[name].ok).map((name) => `${name}: ${v[name].detail}`);
}

export async function verifyOpenssl(input: ChainInput): Promise<Verdict> {
  return withFiles(input, async (f) => {
    const purpose = { serverAuth: ["-purpose", "sslserver"], clientAuth: ["-purpose", "sslclient"], codeSigning: [], any: [] }[input.purpose ?? "any"];
    const untrusted = input.intermediates.length ? ["-untrusted", f.intermediates] : [];
    return verdictOf(run("openssl", ["verify", "-x509_strict", "-CAfile", f.roots, ...untrusted, ...purpose, f.leaf]), (out) => /: OK\s*$/.test(out));
  });
}

export async function verifyGo(input: ChainInput): Promise<Verdict> {
  const bin = await goVerifier();
  return withFiles(input, async (f) => {
    const eku = { serverAuth: "server", clientAuth: "client", codeSigning: "code", any: "any" }[input.purpose ?? "any"];
    const intermediates = input.intermediates.length ? ["-intermediates", f.intermediates] : [];
    return verdictOf(run(bin, ["-roots", f.roots, ...intermediates, "-leaf", f.leaf, "-eku", eku]), (out) => out.trim() === "ok");
  });
}

export async function verifyGnutls(input: ChainInput): Promise<Verdict> {
  return withFiles(input, async (f) => {
    // certtool verifies the chain in --infile, leaf first, against --load-ca-certificate.
    const chain = path.join(path.dirname(f.leaf), "chain.pem");
    fs.writeFileSync(chain, [input.leaf, ...input.intermediates].map((p) => p.trim() + "\n").join(""));
    const purpose = {
      serverAuth: ["--verify-purpose", "1.3.6.1.5.5.7.3.1"],
      clientAuth: ["--verify-purpose", "1.3.6.1.5.5.7.3.2"],
      codeSigning: ["--verify-purpose", "1.3.6.1.5.5.7.3.3"],
      any: [],
    }[input.purpose ?? "any"];
    return verdictOf(
      run("certtool", ["--verify", "--load-ca-certificate", f.roots, "--infile", chain, ...purpose]),
      (out) => /Chain verification output: Verified\./.test(out) && !/Not verified/.test(out),
    );
  });
}

/** NSS: a fresh certificate database with the roots trusted, the intermediates and leaf untrusted, then certutil -V. */
export async function verifyNss(input: ChainInput): Promise<Verdict> {
  return withNssDb(input.roots, input.intermediates, async (db, add) => {
    await add("leaf", input.leaf, ",,");
    const usages = { serverAuth: ["V"], clientAuth: ["C"], codeSigning: ["J"], any: ["V", "C", "J"] }[input.purpose ?? "any"];
    const verdicts: Verdict[] = [];
    for (const usage of usages) {
      const v = await verdictOf(run("certutil", ["-V", "-d", db, "-n", "leaf", "-u", usage]), (out) => /certificate is valid/.test(out));
      if (v.ok) return v;
      verdicts.push(v);
    }
    return { ok: false, detail: verdicts.map((v) => v.detail).join("\n") };
  });
}

/** An NSS database holding the roots (trusted for everything) and the intermediates (untrusted); `add` puts more in. */
async function withNssDb(
  roots: string[],
  intermediates: string[],
  fn: (db: string, add: (nickname: string, pem: string, trust: string) => Promise<void>) => Promise<Verdict>,
): Promise<Verdict> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hsm-ca-nss-"));
  try {
    const db = `sql:${dir}`;
    await run("certutil", ["-N", "-d", db, "--empty-password"]);
    let n = 0;
    /** Each certificate in `pem` under its own nickname: `nickname` for the first, `nickname-2`... after. */
    const add = async (nickname: string, pem: string, trust: string) => {
      for (const [i, one] of splitPem(pem).entries()) {
        const file = path.join(dir, `cert-${n++}.pem`);
        fs.writeFileSync(file, one);
        await run("certutil", ["-A", "-d", db, "-n", i === 0 ? nickname : `${nickname}-${i + 1}`, "-t", trust, "-a", "-i", file]);
      }
    };
    // C: a CA trusted to issue server certificates, T: client certificates too (NSS asks for T for SSL clients).
    for (const [i, root] of roots.entries()) await add(`root-${i}`, root, "CT,C,C");
    for (const [i, intermediate] of intermediates.entries()) await add(`intermediate-${i}`, intermediate, ",,");
    return await fn(db, add);
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return { ok: false, detail: `${e.stdout ?? ""}${e.stderr ?? ""}`.trim() || e.message };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function splitPem(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((b) => b + "\n") ?? [];
}

export interface CrlInput {
  /** The CA that signed the CRL, PEM; `roots` and `intermediates` complete its chain for NSS. */
  issuer: string;
  crl: Buffer;
  roots: string[];
  intermediates?: string[];
}

/** Each relying party parses the CRL (DER) and checks its signature against the issuer. */
export async function verifyCrlWithAll(input: CrlInput): Promise<Verdicts> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hsm-ca-rp-crl-"));
  const issuer = path.join(dir, "issuer.pem");
  const crl = path.join(dir, "crl.der");
  // certtool's --inder would apply to the CA certificate too: it gets the CRL as PEM.
  const crlPem = path.join(dir, "crl.pem");
  fs.writeFileSync(issuer, input.issuer);
  fs.writeFileSync(crl, input.crl);
  fs.writeFileSync(crlPem, `-----BEGIN X509 CRL-----\n${input.crl.toString("base64").replace(/.{64}/g, "$&\n")}\n-----END X509 CRL-----\n`);
  try {
    const bin = await goVerifier();
    const [openssl, go, gnutls, nss] = await Promise.all([
      verdictOf(run("openssl", ["crl", "-inform", "DER", "-in", crl, "-CAfile", issuer, "-noout"]), (out) => /verify OK/.test(out)),
      verdictOf(run(bin, ["-crl", crl, "-issuer", issuer]), (out) => out.startsWith("ok")),
      verdictOf(run("certtool", ["--verify-crl", "--load-ca-certificate", issuer, "--infile", crlPem]), (out) => /Verification output: Verified\./.test(out)),
      // crlutil -I imports a CRL only when its signature verifies under an issuer in the database.
      withNssDb(input.roots, [...(input.intermediates ?? []), input.issuer], (db) => verdictOf(run("crlutil", ["-I", "-d", db, "-i", crl]), () => true)),
    ]);
    return { openssl, go, gnutls, nss };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export interface OcspInput {
  /** The CA that issued the leaf, PEM; `roots` and `intermediates` complete its chain. */
  issuer: string;
  leaf: string;
  /** The responder's answer for the leaf, DER. */
  response: Buffer;
  roots: string[];
  intermediates: string[];
}

export type OcspVerdicts = Verdicts & {
  /** The status each relying party read, where it says: good, revoked or unknown. */
  statuses: Record<keyof Verdicts, string | undefined>;
};

/**
 * Each relying party checks the response's signature (through a delegated
 * responder certificate, if any) for this leaf and reads its status. NSS
 * has no tool that takes a response from a file: ocspclnt asks the
 * responder named in the leaf's AIA itself, so hsm-ca must be listening.
 */
export async function verifyOcspWithAll(input: OcspInput): Promise<OcspVerdicts> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hsm-ca-rp-ocsp-"));
  const file = (name: string, data: string | Buffer) => {
    fs.writeFileSync(path.join(dir, name), data);
    return path.join(dir, name);
  };
  const issuer = file("issuer.pem", input.issuer);
  const leaf = file("leaf.pem", input.leaf);
  const response = file("response.der", input.response);
  const roots = file("roots.pem", input.roots.join("\n"));
  const others = file("others.pem", [...input.intermediates, input.issuer].join("\n"));
  try {
    const bin = await goVerifier();
    const statusIn = (pattern: RegExp) => (v: Verdict) => (v.ok ? pattern.exec(v.detail)?.[1]?.toLowerCase() : undefined);
    const [openssl, go, gnutls, nss] = await Promise.all([
      verdictOf(
        run("openssl", ["ocsp", "-respin", response, "-issuer", issuer, "-cert", leaf, "-CAfile", roots, "-verify_other", others, "-no_nonce"]),
        (out) => /Response verify OK/.test(out),
      ),
      verdictOf(run(bin, ["-ocsp", response, "-issuer", issuer, "-leaf", leaf]), (out) => out.startsWith("ok")),
      verdictOf(run("ocsptool", ["--verify-response", "--load-trust", issuer, "--infile", response]), (out) => /Verifying OCSP Response: Success\./.test(out)),
      withNssDb(input.roots, [...input.intermediates, input.issuer], async (db, add) => {
        await add("leaf", input.leaf, ",,");
        // It says "succeeded" for a good answer and fails, naming revocation, for a revoked one: both are verified answers.
        return verdictOf(run("ocspclnt", ["-S", "leaf", "-d", db], { timeout: 10_000 }), (out) => /succeeded|has been revoked/.test(out), (out) => /has been revoked/.test(out));
      }),
    ]);
    return {
      openssl,
      go,
      gnutls,
      nss,
      statuses: {
        openssl: statusIn(/leaf\.pem: (good|revoked|unknown)/)(openssl),
        go: statusIn(/status=(good|revoked|unknown)/)(go),
        gnutls: statusIn(/\bStatus: (good|revoked|unknown)/i)(gnutls),
        nss: nss.ok ? (/has been revoked/.test(nss.detail) ? "revoked" : "good") : undefined,
      },
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
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
async function verdictOf(
  p: Promise<{ stdout: string; stderr: string }>,
  accepted: (out: string) => boolean,
  /** For a tool whose failing exit status can still report a verified answer (ocspclnt on a revoked certificate). */
  acceptedOnFailure?: (out: string) => boolean,
): Promise<Verdict> {
  try {
    const { stdout, stderr } = await p;
    const out = `${stdout}${stderr}`;
    return { ok: accepted(out), detail: out.trim() };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    const out = `${e.stdout ?? ""}${e.stderr ?? ""}`.trim();
    return { ok: acceptedOnFailure?.(out) ?? false, detail: out || e.message };
  }
}

const GO_SOURCE = path.join(REPO, "test/fixtures/go-verify/main.go");

/** Builds test/fixtures/go-verify once per source version (no network: the standard library and Debian's golang.org/x/crypto). */
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
      env: { ...process.env, GOCACHE: path.join(os.tmpdir(), "hsm-ca-go-cache"), GOPATH: `${path.join(os.tmpdir(), "hsm-ca-gopath")}:/usr/share/gocode`, GO111MODULE: "off", GOFLAGS: "" },
      timeout: 120_000,
    });
    fs.renameSync(partial, bin);
    return bin;
  })();
  return goBuild;
}
