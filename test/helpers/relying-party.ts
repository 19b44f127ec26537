import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { tempDir } from "./openssl.ts";

/**
 * openssl as a relying party checks revocation: files in a scratch
 * directory, output and exit code as a user sees them. Asynchronous: the
 * service under test runs in this process and must keep answering.
 */
export class RelyingParty {
  readonly dir = tempDir("rp-");

  file(name: string, content: string | Uint8Array): string {
    const p = path.join(this.dir, name);
    fs.writeFileSync(p, content);
    return p;
  }

  openssl(args: string[]): Promise<{ ok: boolean; out: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn("openssl", args, { cwd: this.dir });
      let out = "";
      child.stdout.on("data", (d) => (out += d));
      child.stderr.on("data", (d) => (out += d));
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      child.on("error", reject);
      child.on("close", (code) => {
        clearTimeout(timer);
        resolve({ ok: code === 0, out });
      });
    });
  }

  /** `openssl ocsp` against the responder URL, as in the certificate. */
  ocsp(url: string, issuerPem: string, rootPem: string, target: { certPem: string } | { serial: string }, extra: string[] = []) {
    const issuer = this.file("issuer.pem", issuerPem);
    const root = this.file("root.pem", rootPem);
    const which = "certPem" in target ? ["-cert", this.file("cert.pem", target.certPem)] : ["-serial", `0x${target.serial}`];
    return this.openssl(["ocsp", "-issuer", issuer, ...which, "-url", url, "-CAfile", root, "-resp_text", ...extra]);
  }

  /** A CRL (DER from the server) as openssl -text shows it. */
  async crlText(der: Uint8Array): Promise<string> {
    return (await this.openssl(["crl", "-inform", "DER", "-in", this.file("crl.der", der), "-noout", "-text"])).out;
  }

  async crlPem(der: Uint8Array, name = "crl.pem"): Promise<string> {
    const out = path.join(this.dir, name);
    await this.openssl(["crl", "-inform", "DER", "-in", this.file(`${name}.der`, der), "-out", out]);
    return out;
  }

  verify(rootPem: string, chainPem: string, certPem: string, crlFiles: string[], flag = "-crl_check") {
    const crls = this.file("crls.pem", crlFiles.map((f) => fs.readFileSync(f, "utf8")).join(""));
    return this.openssl(["verify", flag, "-CAfile", this.file("root.pem", rootPem), "-untrusted", this.file("chain.pem", chainPem), "-CRLfile", crls, this.file("cert.pem", certPem)]);
  }

  cleanup(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function fetchBytes(url: string): Promise<{ status: number; headers: Headers; body: Uint8Array }> {
  const res = await fetch(url);
  return { status: res.status, headers: res.headers, body: new Uint8Array(await res.arrayBuffer()) };
}

/** Polls until check() is true or the time is up; returns how long it took. */
export async function within(ms: number, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > ms) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
