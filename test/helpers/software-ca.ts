import fs from "node:fs";
import path from "node:path";
import { makeKey, openssl, tempDir } from "./openssl.ts";

/**
 * A CA whose key is an ordinary file, as a mesh's issuer holds it (Linkerd's
 * identity, istiod, a SPIRE server): it signs what it likes with `openssl x509
 * -req`, in or out of the name constraints hsm-ca gave it. What it signs is
 * then put to the relying parties.
 */
export interface SoftwareCa {
  certPem: string;
  keyPem: string;
}

export interface SignedBySoftwareCa {
  certPem: string;
  keyPem: string;
}

export function signWithSoftwareCa(
  ca: SoftwareCa,
  opts: {
    /** openssl -subj form; "/" for an empty subject (an SVID's). */
    subject?: string;
    /** openssl subjectAltName form, e.g. "URI:spiffe://cluster.local/ns/x/sa/y,DNS:y.x.svc.cluster.local". */
    san?: string;
    /** A CA certificate (basicConstraints CA:TRUE, no pathLen) rather than a workload's. */
    isCa?: boolean;
  },
): SignedBySoftwareCa {
  const dir = tempDir("software-ca-");
  try {
    const file = (name: string, text: string) => {
      const p = path.join(dir, name);
      fs.writeFileSync(p, text);
      return p;
    };
    const keyPem = makeKey("ec-p256");
    const csr = openssl(["req", "-new", "-key", file("key.pem", keyPem), "-subj", opts.subject ?? "/"]);
    const ext = opts.isCa
      ? ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"]
      : ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature", "extendedKeyUsage=serverAuth,clientAuth"];
    // An empty subject makes the SANs the identity: critical, as RFC 5280 §4.2.1.6 and the X.509-SVID rules say.
    if (opts.san) ext.push(`subjectAltName=${opts.subject && opts.subject !== "/" ? "" : "critical,"}${opts.san}`);
    ext.push("subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid");
    const certPem = openssl([
      "x509", "-req", "-in", file("req.csr", csr),
      "-CA", file("ca.pem", ca.certPem), "-CAkey", file("ca-key.pem", ca.keyPem), "-set_serial", `0x${Date.now().toString(16)}${Math.floor(Math.random() * 1e6).toString(16)}`,
      // A day: openssl 3.0's x509 -req counts in whole days (inside the sub-CA's own lifetime).
      "-days", "1",
      "-extfile", file("ext.cnf", ext.join("\n") + "\n"),
    ]);
    return { certPem, keyPem };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
