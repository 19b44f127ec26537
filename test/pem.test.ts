import * as x509 from "@peculiar/x509";
import { describe, expect, it } from "vitest";
import { parseCsr } from "../src/csr/parse-csr.ts";
import { derToPem } from "../src/asn1/pem.ts";

/**
 * ACME sends CSRs as DER; the CA wraps them in PEM to parse them. A DER
 * length that fills the last base64 line exactly once produced an empty
 * line and a refused CSR (seen with lego).
 */
describe("derToPem", () => {
  it("round-trips CSRs of every base64 line fill, including exactly full lines", async () => {
    const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
    const fills = new Set<number>();
    for (let n = 1; fills.size < 48 && n < 400; n++) {
      const csr = await x509.Pkcs10CertificateRequestGenerator.create({
        name: `CN=${"a".repeat(n)}.example.test`,
        keys,
        signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
        extensions: [new x509.SubjectAlternativeNameExtension([{ type: "dns", value: `${"a".repeat(n)}.example.test` }])],
      });
      const der = new Uint8Array(csr.rawData);
      const pem = derToPem(der, "CERTIFICATE REQUEST");
      expect(pem).not.toMatch(/\n\n/);
      const parsed = await parseCsr(pem);
      expect(Buffer.from(parsed.der).equals(Buffer.from(der))).toBe(true);
      fills.add(der.length % 48);
    }
    expect(fills.has(0)).toBe(true); // the case that used to break was covered
  });
});
