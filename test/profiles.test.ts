import fs from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { isCaProfile } from "../src/policy/profile-schema.ts";
import { loadProfiles, ProfileError } from "../src/policy/profiles.ts";
import { tempDir } from "./helpers/openssl.ts";

const SHIPPED = path.resolve(import.meta.dirname, "..", "profiles");

/** The shipped tls-server profile, renamed so that it lives in broken.yaml. */
const GOOD = fs.readFileSync(path.join(SHIPPED, "tls-server.yaml"), "utf8").replace("name: tls-server", "name: broken");

/** Applies one textual edit and fails loudly if the edit did not take, so no test passes on an untouched file. */
function edit(text: string, from: string | RegExp, to: string): string {
  const out = text.replace(from, to);
  if (out === text) throw new Error(`test setup: ${String(from)} not found in the profile text`);
  return out;
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function dirWith(files: Record<string, string>): string {
  const dir = tempDir("profiles-");
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
  return dir;
}

function loadError(dir: string): ProfileError {
  try {
    loadProfiles(dir);
  } catch (err) {
    expect(err).toBeInstanceOf(ProfileError);
    return err as ProfileError;
  }
  throw new Error(`loadProfiles(${dir}) succeeded; a ProfileError was expected`);
}

describe("the shipped profiles", () => {
  const profiles = loadProfiles(SHIPPED);

  it("are exactly tls-server, tls-client, spiffe-svid, code-signing and mesh-intermediate", () => {
    expect([...profiles.keys()].sort()).toEqual(["code-signing", "mesh-intermediate", "spiffe-svid", "tls-client", "tls-server"]);
  });

  it("mesh-intermediate: a CA profile, pathLen 0, the cluster's trust domain and DNS names, no IP address, 7d of at most 30d, two approvals", () => {
    const p = profiles.get("mesh-intermediate")!;
    expect(isCaProfile(p)).toBe(true);
    expect(p.ca).toEqual({
      pathLength: 0,
      keyUsage: [],
      nameConstraints: {
        permitted: { dns: ["cluster.local", "svc"], uri: ["cluster.local", ".cluster.local"], ip: [] },
        excluded: { dns: [], uri: [], ip: ["0.0.0.0/0", "::/0"] },
      },
    });
    expect(p.keyUsage).toBeUndefined();
    expect(p.extendedKeyUsage).toBeUndefined();
    expect(p.subject.commonName).toBe("csr");
    expect(p.sans).toMatchObject({ required: false, dns: { suffixes: ["cluster.local"] }, uri: { spiffeTrustDomains: ["cluster.local"] } });
    expect(p.lifetime).toEqual({ default: "7d", max: "30d" });
    expect(p.subjectKeys.rsaBits).toEqual([3072, 4096]);
    expect(p.approvals.required).toBe(2);
  });

  it("the end-entity profiles are no CA profiles, and need no approvals unless they say so", () => {
    for (const name of ["tls-server", "tls-client", "spiffe-svid"]) {
      expect(isCaProfile(profiles.get(name)!)).toBe(false);
      expect(profiles.get(name)!.approvals.required).toBe(0);
    }
  });

  it("tls-server: private DNS names with wildcards, private IP ranges, serverAuth, 30d of at most 90d", () => {
    const p = profiles.get("tls-server")!;
    expect(p.sans.dns?.wildcards).toBe(true);
    expect(p.sans.dns?.suffixes).toContain("example.com");
    expect(p.sans.ip?.ranges).toEqual(expect.arrayContaining(["10.0.0.0/8", "::1/128", "fc00::/7"]));
    expect(p.sans.fromCommonName).toBe(true);
    expect(p.subject.commonName).toBe("first-san");
    expect(p.lifetime).toEqual({ default: "30d", max: "90d" });
    expect(p.extendedKeyUsage).toEqual(["serverAuth"]);
    expect(p.keyUsage).toEqual({ all: ["digitalSignature"], rsa: ["keyEncipherment"] });
  });

  it("tls-client: CN from the CSR, SANs optional, no wildcards (schema default), clientAuth", () => {
    const p = profiles.get("tls-client")!;
    expect(p.subject.commonName).toBe("csr");
    expect(p.sans.required).toBe(false);
    expect(p.sans.dns?.wildcards).toBe(false);
    expect(p.sans.email?.domains).toEqual(["example.com", "example.test"]);
    expect(p.extendedKeyUsage).toEqual(["clientAuth"]);
  });

  it("spiffe-svid: exactly one SPIFFE URI, empty subject, no Ed25519, 1h of at most 24h", () => {
    const p = profiles.get("spiffe-svid")!;
    expect(p.sans.uri).toEqual({ spiffeTrustDomains: ["example.org", "cluster.local"], exactlyOne: true });
    expect(p.sans.dns).toBeUndefined();
    expect(p.subject).toEqual({ commonName: "none", copyFromCsr: [] });
    expect(p.subjectKeys.ed25519).toBe(false);
    expect(p.lifetime).toEqual({ default: "1h", max: "24h" });
    expect(p.extendedKeyUsage).toEqual(["serverAuth", "clientAuth"]);
  });

  it("code-signing: RSA 3072/4096 only (no 2048), CN from the CSR, codeSigning", () => {
    const p = profiles.get("code-signing")!;
    expect(p.subjectKeys).toEqual({ ecdsaCurves: ["P-256", "P-384"], rsaBits: [3072, 4096], ed25519: false, rsaSmallExponents: false });
    expect(p.subject.commonName).toBe("csr");
    expect(p.sans.required).toBe(false);
    expect(p.extendedKeyUsage).toEqual(["codeSigning"]);
    // fromCommonName defaults to false when the file leaves it out.
    expect(p.sans.fromCommonName).toBe(false);
  });
});

describe("loadProfiles on a directory of the operator's files", () => {
  it("loads the unedited base profile, so each failure below is caused by its one edit", () => {
    const profiles = loadProfiles(dirWith({ "broken.yaml": GOOD }));
    expect([...profiles.keys()]).toEqual(["broken"]);
    expect(profiles.get("broken")!.lifetime.max).toBe("90d");
  });

  it("reads .yml and .json files too, and ignores other files", () => {
    const json = JSON.stringify({
      name: "svc-json",
      subjectKeys: { ecdsaCurves: ["P-256"] },
      lifetime: { default: "1d", max: "7d" },
      subject: { commonName: "none" },
      sans: { uri: { spiffeTrustDomains: ["example.org"] } },
      keyUsage: { all: ["digitalSignature"] },
      extendedKeyUsage: ["clientAuth"],
    });
    const dir = dirWith({
      "svc-yml.yml": edit(GOOD, "name: broken", "name: svc-yml"),
      "svc-json.json": json,
      "README.md": "not a profile",
      "old.yaml.bak": "name: [this would not parse",
    });
    expect([...loadProfiles(dir).keys()].sort()).toEqual(["svc-json", "svc-yml"]);
  });

  it("invalid YAML: names the file and says where", () => {
    const err = loadError(dirWith({ "broken.yaml": "name: broken\nsubjectKeys: [P-256\nlifetime:\n  default: 1d\n" }));
    expect(err.message).toMatch(/^broken\.yaml: not valid YAML: .*line \d+/);
  });

  it("invalid JSON: names the file", () => {
    const err = loadError(dirWith({ "broken.json": '{"name": "broken",' }));
    expect(err.message).toMatch(/^broken\.json: not valid JSON: /);
  });

  it("an unknown top-level key: names the file and the key", () => {
    const err = loadError(dirWith({ "broken.yaml": GOOD + "colour: blue\n" }));
    expect(err.message).toMatch(/^broken\.yaml: \(top level\): /);
    expect(err.message).toContain('"colour"');
  });

  it("an unknown nested key (a typo): names the file, the section and the key", () => {
    const err = loadError(dirWith({ "broken.yaml": edit(GOOD, "  max: 90d", "  max: 90d\n  maximum: 90d") }));
    expect(err.message).toMatch(/^broken\.yaml: lifetime: /);
    expect(err.message).toContain('"maximum"');
  });

  it.each([
    ["lifetime.max", "max: 90d", "max: 3 months"],
    ["lifetime.default", "default: 30d", "default: 30x"],
    ["lifetime.default", "default: 30d", "default: 0d"],
  ])("a bad duration in %s (%s -> %s): names the file and the field, and shows the form", (field, from, to) => {
    const err = loadError(dirWith({ "broken.yaml": edit(GOOD, from, to) }));
    expect(err.message).toBe(`broken.yaml: ${field}: expected a duration like "1h", "30d" (units s, m, h, d)`);
  });

  it("a duration written as a bare number (no unit): names the file and the field", () => {
    const err = loadError(dirWith({ "broken.yaml": edit(GOOD, "max: 90d", "max: 90") }));
    expect(err.message).toMatch(/^broken\.yaml: lifetime\.max: .*expected string, received number/);
  });

  it("a default lifetime longer than the max: names lifetime.default and the max", () => {
    const err = loadError(dirWith({ "broken.yaml": edit(GOOD, "default: 30d", "default: 91d") }));
    expect(err.message).toMatch(/^broken\.yaml: lifetime\.default: /);
    expect(err.message).toContain("longer than lifetime.max");
  });

  it("a default lifetime equal to the max is fine", () => {
    expect(loadProfiles(dirWith({ "broken.yaml": edit(GOOD, "default: 30d", "default: 90d") })).get("broken")!.lifetime.default).toBe("90d");
  });

  it.each([
    ["an empty map", "subjectKeys: {}\n"],
    ["empty lists", "subjectKeys:\n  ecdsaCurves: []\n  rsaBits: []\n  ed25519: false\n"],
  ])("subjectKeys that allow no key (%s): names subjectKeys", (_what, keys) => {
    const err = loadError(dirWith({ "broken.yaml": edit(GOOD, /subjectKeys:\n(  .*\n)+/, keys) }));
    expect(err.message).toBe("broken.yaml: subjectKeys: allow at least one key type");
  });

  it("a curve the CA does not support: names subjectKeys.ecdsaCurves and the allowed curves", () => {
    const err = loadError(dirWith({ "broken.yaml": edit(GOOD, "ecdsaCurves: [P-256, P-384]", "ecdsaCurves: [P-256, P-521]") }));
    expect(err.message).toMatch(/^broken\.yaml: subjectKeys\.ecdsaCurves\.1: /);
    expect(err.message).toContain("P-384");
  });

  it("a name that does not match the file name: names both", () => {
    const err = loadError(dirWith({ "broken.yaml": edit(GOOD, "name: broken", "name: tls-server") }));
    expect(err.message).toBe('broken.yaml: name: "tls-server" must match the file name "broken"');
  });

  it.each([
    ["upper case", "Example.COM"],
    ["a wildcard, which no name could ever match", '"*.example.com"'],
    ["a trailing dot", '"example.com."'],
    ["an underscore", "my_domain.test"],
  ])("a bad DNS suffix (%s): names sans.dns.suffixes.<index>", (_what, suffix) => {
    const err = loadError(dirWith({ "broken.yaml": edit(GOOD, "suffixes: [internal, test,", `suffixes: [internal, ${suffix},`) }));
    expect(err.message).toBe("broken.yaml: sans.dns.suffixes.1: expected a lower-case DNS name");
  });

  it("a wildcard SPIFFE trust domain: names sans.uri.spiffeTrustDomains.<index>", () => {
    const spiffe = fs.readFileSync(path.join(SHIPPED, "spiffe-svid.yaml"), "utf8");
    const text = edit(edit(spiffe, "name: spiffe-svid", "name: broken"), "[example.org, cluster.local]", '["*.example.org"]');
    const err = loadError(dirWith({ "broken.yaml": text }));
    expect(err.message).toBe("broken.yaml: sans.uri.spiffeTrustDomains.0: expected a lower-case DNS name");
  });

  it("an IP range that is not CIDR: names sans.ip.ranges.<index>", () => {
    const err = loadError(dirWith({ "broken.yaml": edit(GOOD, "ranges: [127.0.0.0/8,", "ranges: [127.0.0.1,") }));
    expect(err.message).toMatch(/^broken\.yaml: sans\.ip\.ranges\.0: expected an address range/);
  });

  it("an empty file: names the file", () => {
    const err = loadError(dirWith({ "broken.yaml": "" }));
    expect(err.message).toMatch(/^broken\.yaml: \(top level\): /);
  });

  it("one bad file among good ones stops the load and is the one named", () => {
    const files: Record<string, string> = { "broken.yaml": edit(GOOD, "max: 90d", "max: forever") };
    for (const f of fs.readdirSync(SHIPPED).filter((f) => f.endsWith(".yaml"))) files[f] = fs.readFileSync(path.join(SHIPPED, f), "utf8");
    const err = loadError(dirWith(files));
    expect(err.message).toMatch(/^broken\.yaml: lifetime\.max: /);
  });

  it("two files defining the same profile (x.json and x.yaml) are refused, naming both", () => {
    const dir = dirWith({
      "broken.yaml": GOOD,
      "broken.json": JSON.stringify({ ...(loadProfiles(dirWith({ "broken.yaml": GOOD })).get("broken")!), lifetime: { default: "30d", max: "900d" } }),
    });
    const err = loadError(dir);
    expect(err.message).toContain("broken.json");
    expect(err.message).toContain("broken.yaml");
    expect(err.message).toContain('"broken"');
  });

  it("an empty directory", () => {
    const dir = dirWith({});
    expect(loadError(dir).message).toBe(`no profiles (*.yaml, *.json) in ${dir}`);
  });

  it("a directory with no profile files in it", () => {
    const dir = dirWith({ "README.md": "# profiles\n", "tls-server.yaml.orig": GOOD });
    expect(loadError(dir).message).toBe(`no profiles (*.yaml, *.json) in ${dir}`);
  });

  it("a directory that does not exist", () => {
    const dir = path.join(dirWith({}), "nope");
    expect(loadError(dir).message).toBe(`cannot read the profiles directory ${dir}: ENOENT`);
  });
});

describe("CA profiles (a ca section)", () => {
  const MESH = fs.readFileSync(path.join(SHIPPED, "mesh-intermediate.yaml"), "utf8").replace("name: mesh-intermediate", "name: broken");

  it("loads the unedited mesh-intermediate, renamed", () => {
    expect(isCaProfile(loadProfiles(dirWith({ "broken.yaml": MESH })).get("broken")!)).toBe(true);
  });

  it("needs two approvals when it says nothing, and may say 0 (automation with an approval of its own)", () => {
    const silent = loadProfiles(dirWith({ "broken.yaml": edit(MESH, "approvals: { required: 2 }", "") })).get("broken")!;
    expect(silent.approvals.required).toBe(2);
    const auto = loadProfiles(dirWith({ "broken.yaml": edit(MESH, "approvals: { required: 2 }", "approvals: { required: 0 }") })).get("broken")!;
    expect(auto.approvals.required).toBe(0);
  });

  it("pathLength defaults to 0", () => {
    const p = loadProfiles(dirWith({ "broken.yaml": edit(MESH, "  pathLength: 0\n", "") })).get("broken")!;
    expect(p.ca?.pathLength).toBe(0);
  });

  it.each([
    ["keyUsage of its own", (t: string) => edit(t, "ca:\n", "keyUsage: { all: [digitalSignature] }\nca:\n"), "broken.yaml: keyUsage: a CA profile's key usages are keyCertSign, cRLSign and ca.keyUsage: remove keyUsage"],
    ["an extendedKeyUsage", (t: string) => edit(t, "ca:\n", "extendedKeyUsage: [serverAuth]\nca:\n"), /^broken\.yaml: extendedKeyUsage: a CA profile has no extendedKeyUsage/],
    ["no CN from the CSR", (t: string) => edit(t, "commonName: csr", "commonName: none"), 'broken.yaml: subject.commonName: a CA profile takes its CN from the CSR: use "csr"'],
    [
      "names permitted but every IP address left open",
      (t: string) => edit(t, /    excluded:\n.*\n      ip: \[0\.0\.0\.0\/0, "::\/0"\]\n/, ""),
      /^broken\.yaml: ca\.nameConstraints\.excluded\.ip: the permitted names leave every IP address open to this CA/,
    ],
    ["a key usage other than digitalSignature", (t: string) => edit(t, "keyUsage: []", "keyUsage: [keyEncipherment]"), /^broken\.yaml: ca\.keyUsage\.0: /],
    ["a URI constraint that is not a host", (t: string) => edit(t, "uri: [cluster.local, .cluster.local]", 'uri: ["spiffe://cluster.local"]'), /^broken\.yaml: ca\.nameConstraints\.permitted\.uri\.0: expected a lower-case host/],
    ["an IPv4 prefix over 32", (t: string) => edit(t, "ip: [0.0.0.0/0,", "ip: [10.0.0.0/33,"), /^broken\.yaml: ca\.nameConstraints\.excluded\.ip\.0: expected an address range/],
    ["a path length over 4", (t: string) => edit(t, "pathLength: 0", "pathLength: 9"), /^broken\.yaml: ca\.pathLength: /],
  ])("refused: %s", (_what, change, message) => {
    const err = loadError(dirWith({ "broken.yaml": change(MESH) }));
    if (typeof message === "string") expect(err.message).toBe(message);
    else expect(err.message).toMatch(message);
  });

  it("an end-entity profile still needs keyUsage and extendedKeyUsage", () => {
    expect(loadError(dirWith({ "broken.yaml": edit(GOOD, /keyUsage:\n  all: \[digitalSignature\]\n  rsa: \[keyEncipherment\]\n/, "") })).message).toBe(
      "broken.yaml: keyUsage: required (or a ca section, for a CA profile)",
    );
    expect(loadError(dirWith({ "broken.yaml": edit(GOOD, "extendedKeyUsage: [serverAuth]\n", "") })).message).toBe(
      "broken.yaml: extendedKeyUsage: required (or a ca section, for a CA profile)",
    );
  });
});
