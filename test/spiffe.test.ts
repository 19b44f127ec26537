import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import tls from "node:tls";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spiffeBundle } from "../src/api/trust-bundle.ts";
import type { CaRow } from "../src/store/cas.ts";
import { makeCsr, tempDir, verify, type KeySpec } from "./helpers/openssl.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

/**
 * X.509-SVIDs from the spiffe-svid profile and the trust bundle endpoints, as
 * a service mesh consumes them: certificates parsed and held to the
 * X.509-SVID specification (github.com/spiffe/spiffe, standards/X509-SVID.md)
 * by checks written here from the spec, not by hsm-ca's own code; the JWKS
 * checked against the SPIFFE Trust Domain and Bundle specification; openssl
 * and Node's TLS as relying parties.
 */

let t: TestService;
let token: string;
let auditor: string;

beforeAll(async () => {
  t = await startTestService("postgres");
  token = await t.token("issuer", "spiffe-svid");
  auditor = await t.token("auditor");
});
afterAll(async () => {
  await t?.stop();
});

const issue = (csr: string, validity?: string) =>
  t.api("POST", "/api/v1/certificates", { token, json: { csr, profile: "spiffe-svid", ...(validity ? { validity } : {}) } });
const stored = async () => (await t.api("GET", "/api/v1/certificates?profile=spiffe-svid&limit=500", { token: auditor })).body.items.length as number;

/** SPIFFE ID rules (SPIFFE-ID.md §2): why the URI is not a leaf SPIFFE ID, or undefined. */
function spiffeIdProblem(uri: string): string | undefined {
  if (Buffer.byteLength(uri) > 2048) return "longer than 2048 bytes";
  if (!uri.startsWith("spiffe://")) return "scheme is not spiffe";
  const rest = uri.slice("spiffe://".length);
  const slash = rest.indexOf("/");
  const trustDomain = slash < 0 ? rest : rest.slice(0, slash);
  const p = slash < 0 ? "" : rest.slice(slash);
  if (!/^[a-z0-9._-]+$/.test(trustDomain)) return "trust domain has characters other than lower-case letters, digits, '.', '-', '_' (or a port or userinfo)";
  if (p === "") return "a leaf SVID needs a path";
  for (const segment of p.split("/").slice(1)) {
    if (segment === "") return "empty path segment";
    if (segment === "." || segment === "..") return "relative path segment";
    if (!/^[A-Za-z0-9._-]+$/.test(segment)) return "path has characters other than letters, digits, '.', '-', '_' (or a query or fragment)";
  }
  return undefined;
}

/** X.509-SVID §2-§5 for a leaf: every rule a validator applies, as a list of violations. */
function svidViolations(pem: string): string[] {
  const cert = new x509.X509Certificate(pem);
  const out: string[] = [];
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const uris = san?.names.items.filter((n) => n.type === "url").map((n) => n.value) ?? [];
  if (uris.length !== 1) out.push(`expected exactly one URI SAN, found ${uris.length}`);
  for (const uri of uris) {
    const problem = spiffeIdProblem(uri);
    if (problem) out.push(`${uri}: ${problem}`);
  }
  if (cert.subject === "" && !san?.critical) out.push("empty subject but the SAN extension is not critical");
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  if (!bc) out.push("no basicConstraints");
  else if (bc.ca) out.push("basicConstraints cA is true");
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  if (!ku) out.push("no keyUsage");
  else {
    if (!ku.critical) out.push("keyUsage is not critical");
    if (!(ku.usages & x509.KeyUsageFlags.digitalSignature)) out.push("keyUsage lacks digitalSignature");
    if (ku.usages & x509.KeyUsageFlags.keyCertSign) out.push("keyUsage has keyCertSign");
    if (ku.usages & x509.KeyUsageFlags.cRLSign) out.push("keyUsage has cRLSign");
    const allowed = x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment | x509.KeyUsageFlags.keyAgreement;
    if (ku.usages & ~allowed) out.push(`keyUsage has bits beyond digitalSignature, keyEncipherment, keyAgreement: ${ku.usages}`);
  }
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
  if (eku) {
    for (const [name, oid] of [["serverAuth", "1.3.6.1.5.5.7.3.1"], ["clientAuth", "1.3.6.1.5.5.7.3.2"]]) {
      if (!eku.usages.map(String).includes(oid!)) out.push(`extendedKeyUsage lacks ${name}`);
    }
  }
  return out;
}

describe("X.509-SVIDs issued over REST from the spiffe-svid profile", () => {
  const cases: Array<[string, KeySpec, string]> = [
    ["an ECDSA P-256 key", "ec-p256", "spiffe://example.org/ns/default/sa/web"],
    ["an ECDSA P-384 key", "ec-p384", "spiffe://cluster.local/ns/payments/sa/api-v2"],
    ["an RSA 2048 key", "rsa-2048", "spiffe://example.org/billing/worker_1"],
  ];
  for (const [what, key, id] of cases) {
    it(`follow the X.509-SVID rules for ${what}`, async () => {
      const { csr } = makeCsr({ key, subject: "/", san: `URI:${id}` });
      const res = await issue(csr, "1h");
      expect(res.status, res.text).toBe(201);
      expect(svidViolations(res.body.certificate)).toEqual([]);
      const cert = new x509.X509Certificate(res.body.certificate);
      expect(cert.getExtension(x509.SubjectAlternativeNameExtension)!.names.items.map((n) => [n.type, n.value])).toEqual([["url", id]]);
      expect(cert.subject).toBe("");
      const ku = cert.getExtension(x509.KeyUsagesExtension)!.usages;
      // keyEncipherment only where it means something: RSA keys.
      expect(Boolean(ku & x509.KeyUsageFlags.keyEncipherment)).toBe(key.startsWith("rsa"));
      expect(cert.notAfter.getTime() - cert.notBefore.getTime()).toBeLessThanOrEqual(3_600_000 + 60_000);
    });
  }

  it("(the checks above do catch violations: the issuing CA's certificate breaks the leaf rules)", () => {
    expect(svidViolations(t.chainPem)).toEqual(
      expect.arrayContaining(["expected exactly one URI SAN, found 0", "basicConstraints cA is true", "keyUsage lacks digitalSignature", "keyUsage has keyCertSign", "keyUsage has cRLSign"]),
    );
    expect(spiffeIdProblem("spiffe://example.org/a/./b")).toBe("relative path segment");
    expect(spiffeIdProblem("spiffe://example.org/a#frag")).toMatch(/query or fragment/);
  });

  it("a subject in the CSR is dropped: the identity is the URI SAN alone", async () => {
    const { csr } = makeCsr({ subject: "/CN=web/O=Example", san: "URI:spiffe://example.org/ns/default/sa/web" });
    const res = await issue(csr);
    expect(res.status, res.text).toBe(201);
    expect(new x509.X509Certificate(res.body.certificate).subject).toBe("");
    expect(svidViolations(res.body.certificate)).toEqual([]);
  });

  const refusals: Array<[string, string, RegExp]> = [
    ["two URI SANs", "URI:spiffe://example.org/a,URI:spiffe://example.org/b", /needs exactly one URI SAN \(the SPIFFE ID\); the CSR has 2/],
    ["a non-SPIFFE URI", "URI:https://example.org/web", /is not a SPIFFE ID/],
    ["a SPIFFE ID without a path", "URI:spiffe://example.org", /is not a SPIFFE ID/],
    ["the trust domain's root ID", "URI:spiffe://example.org/", /invalid path segment/],
    ["a '..' segment", "URI:spiffe://example.org/ns/../admin", /invalid path segment/],
    ["an empty segment", "URI:spiffe://example.org/ns//web", /invalid path segment/],
    ["a query", "URI:spiffe://example.org/web?x=1", /is not a SPIFFE ID/],
    ["an upper-case trust domain", "URI:spiffe://Example.org/web", /is not a valid trust domain/],
    ["a port in the trust domain", "URI:spiffe://example.org:8443/web", /is not a valid trust domain/],
    ["a trust domain the profile does not serve", "URI:spiffe://evil.example/web", /trust domain "evil\.example" is not served/],
    ["a DNS name beside the SPIFFE ID", "URI:spiffe://example.org/web,DNS:web.example.org", /does not allow DNS names/],
    ["no SAN at all", "", /needs at least one subjectAltName/],
  ];
  for (const [what, san, message] of refusals) {
    it(`refuses a CSR with ${what}, and stores nothing`, async () => {
      const before = await stored();
      const { csr } = makeCsr({ subject: san ? "/" : "/CN=web", ...(san ? { san } : {}) });
      const res = await issue(csr);
      expect(res.status, res.text).toBe(400);
      expect(res.body.type).toBe("urn:hsm-ca:problem:rejected-identifier");
      expect(res.body.detail).toMatch(message);
      expect(await stored()).toBe(before);
    });
  }

  it("validity beyond the profile's 24 hours is refused", async () => {
    const { csr } = makeCsr({ subject: "/", san: "URI:spiffe://example.org/web" });
    const res = await issue(csr, "48h");
    expect(res.status).toBe(400);
    expect(res.body.type).toBe("urn:hsm-ca:problem:bad-validity");
  });
});

describe("trust bundle endpoints", () => {
  it("/ca/bundle.pem holds the trusted root, over plain HTTP", async () => {
    const res = await fetch(`${t.service.httpUrl}/ca/bundle.pem`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/x-pem-file");
    expect(await res.text()).toBe(t.rootPem);
  });

  it("/ca/spiffe-bundle.json is a SPIFFE bundle: a JWK Set of x509-svid keys, one self-signed root each, sequence and refresh hint set", async () => {
    const res = await fetch(`${t.service.httpUrl}/ca/spiffe-bundle.json`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(res.headers.get("cache-control")).toBe("public, max-age=300");
    const bundle = (await res.json()) as any;
    expect(Object.keys(bundle).sort()).toEqual(["keys", "spiffe_refresh_hint", "spiffe_sequence"]);
    expect(Number.isSafeInteger(bundle.spiffe_sequence) && bundle.spiffe_sequence > 0).toBe(true);
    expect(Number.isSafeInteger(bundle.spiffe_refresh_hint) && bundle.spiffe_refresh_hint > 0).toBe(true);
    const root = new crypto.X509Certificate(t.rootPem);
    expect(bundle.spiffe_sequence).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
    expect(bundle.spiffe_sequence).toBeGreaterThanOrEqual(Math.floor(new Date(root.validFrom).getTime() / 1000) - 120);
    expect(bundle.keys).toHaveLength(1);
    for (const jwk of bundle.keys) {
      // §4.2: kty and use set; X.509-SVID §6.1: use x509-svid, no kid, exactly one DER CA certificate in x5c.
      expect(jwk.use).toBe("x509-svid");
      expect(jwk.kty).toMatch(/^(EC|RSA)$/);
      expect(jwk).not.toHaveProperty("kid");
      expect(jwk.x5c).toHaveLength(1);
      const cert = new crypto.X509Certificate(Buffer.from(jwk.x5c[0], "base64"));
      expect(cert.ca).toBe(true);
      expect(cert.checkIssued(cert)).toBe(true);
      expect(cert.verify(cert.publicKey)).toBe(true);
      expect(cert.fingerprint256).toBe(root.fingerprint256);
      // The JWK's own key parameters are that certificate's public key.
      const { x5c: _x5c, use: _use, ...keyOnly } = jwk;
      const fromJwk = crypto.createPublicKey({ key: keyOnly, format: "jwk" });
      expect(fromJwk.export({ type: "spki", format: "der" }).equals(cert.publicKey.export({ type: "spki", format: "der" }))).toBe(true);
    }
  });

  it("openssl and Node's TLS accept an SVID against the bundle: mutual TLS between two workloads, each seeing the other's SPIFFE ID", async () => {
    const bundle = (await (await fetch(`${t.service.httpUrl}/ca/spiffe-bundle.json`)).json()) as any;
    const anchors = bundle.keys
      .filter((k: any) => k.use === "x509-svid")
      .map((k: any) => new crypto.X509Certificate(Buffer.from(k.x5c[0], "base64")).toString())
      .join("");

    const svid = async (id: string) => {
      const { csr, keyPem } = makeCsr({ subject: "/", san: `URI:${id}` });
      const res = await issue(csr, "1h");
      expect(res.status, res.text).toBe(201);
      return { cert: res.body.certificate as string, chain: res.body.chain as string, key: keyPem };
    };
    const server = await svid("spiffe://example.org/ns/default/sa/server");
    const client = await svid("spiffe://example.org/ns/default/sa/client");
    for (const s of [server, client]) {
      const v = verify(anchors, s.chain, s.cert, ["-x509_strict", "-purpose", "sslclient"]);
      expect(v.output).toContain("OK");
      expect(v.ok).toBe(true);
    }
    // The PEM bundle works as openssl's CAfile just the same.
    expect(verify(await (await fetch(`${t.service.httpUrl}/ca/bundle.pem`)).text(), client.chain, client.cert, ["-purpose", "sslserver"]).ok).toBe(true);

    // SVIDs carry no DNS name: a mesh checks the peer's SPIFFE ID instead of a hostname.
    const uriOf = (peer: tls.PeerCertificate) => peer.subjectaltname;
    const srv = tls.createServer({ key: server.key, cert: server.cert + server.chain, ca: anchors, requestCert: true, rejectUnauthorized: true });
    const seenByServer = new Promise<string | undefined>((resolve) => srv.on("secureConnection", (s) => (resolve(uriOf(s.getPeerCertificate())), s.end())));
    await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
    const port = (srv.address() as { port: number }).port;
    const seenByClient = await new Promise<string | undefined>((resolve, reject) => {
      const s = tls.connect({ host: "127.0.0.1", port, key: client.key, cert: client.cert + client.chain, ca: anchors, checkServerIdentity: () => undefined }, () => {
        expect(s.authorized).toBe(true);
        resolve(uriOf(s.getPeerCertificate()));
      });
      s.on("error", reject);
    });
    expect(seenByClient).toBe("URI:spiffe://example.org/ns/default/sa/server");
    expect(await seenByServer).toBe("URI:spiffe://example.org/ns/default/sa/client");
    srv.close();
  });

  it("the bundle follows the set of roots: a new root joins, revoked and expired ones leave, and the sequence grows with each change", () => {
    const dir = tempDir("roots-");
    const selfSigned = (cn: string) => {
      const out = path.join(dir, `${cn}.pem`);
      const args = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", path.join(dir, `${cn}.key`), "-subj", `/CN=${cn}`, "-days", "30", "-out", out];
      execFileSync("openssl", args, { stdio: "ignore" });
      return fs.readFileSync(out, "utf8");
    };
    const day = 86_400_000;
    const now = new Date();
    const row = (id: number, pem: string, extra: Partial<CaRow>): CaRow =>
      ({ id, role: "root", status: "active", certificatePem: pem, notAfter: new Date(now.getTime() + 365 * day), revokedAt: null, createdAt: new Date(now.getTime() - 100 * day), ...extra }) as CaRow;
    const a = selfSigned("Root A");
    const b = selfSigned("Root B");
    fs.rmSync(dir, { recursive: true, force: true });
    const subjectsIn = (rows: CaRow[]) => spiffeBundle(rows, now).keys.map((k: any) => new crypto.X509Certificate(Buffer.from(k.x5c[0], "base64")).subject);

    const one = [row(1, a, {})];
    const two = [row(1, a, {}), row(2, b, { createdAt: new Date(now.getTime() - 10 * day) })];
    const revoked = [row(1, a, { status: "revoked", revokedAt: new Date(now.getTime() - 5 * day) }), row(2, b, { createdAt: new Date(now.getTime() - 10 * day) })];
    const expired = [row(1, a, { notAfter: new Date(now.getTime() - 5 * day) }), row(2, b, { createdAt: new Date(now.getTime() - 10 * day) })];
    expect(subjectsIn(one)).toEqual(["CN=Root A"]);
    expect(subjectsIn(two)).toEqual(["CN=Root A", "CN=Root B"]);
    expect(subjectsIn(revoked)).toEqual(["CN=Root B"]);
    expect(subjectsIn(expired)).toEqual(["CN=Root B"]);
    const seq = (rows: CaRow[]) => spiffeBundle(rows, now).spiffe_sequence;
    expect(seq(two)).toBeGreaterThan(seq(one));
    expect(seq(revoked)).toBeGreaterThan(seq(two));
    expect(seq(expired)).toBeGreaterThan(seq(two));
    // Intermediates never appear in a SPIFFE bundle.
    expect(subjectsIn([...one, { ...row(3, b, {}), role: "intermediate" } as CaRow])).toEqual(["CN=Root A"]);
  });
});
