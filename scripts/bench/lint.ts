import crypto from "node:crypto";
import * as x509 from "@peculiar/x509";
import { buildRootCertificate } from "../../src/ca/ca-certificate.ts";
import { buildCrl, type CrlEntry } from "../../src/ca/crl.ts";
import { buildLeafCertificate } from "../../src/ca/leaf-certificate.ts";
import { buildCertId, issuerHashes } from "../../src/ca/ocsp-cert-id.ts";
import { buildOcspResponse } from "../../src/ca/ocsp-response.ts";
import { newSerial } from "../../src/ca/serial.ts";
import { loadConfig } from "../../src/config.ts";
import { Hsm } from "../../src/hsm/hsm.ts";
import { setLintEnabled } from "../../src/lint/gate.ts";
import { throwawayKey } from "../../src/lint/throwaway-keys.ts";
import { callsPerSecond } from "./raw-sign.ts";
import { tempDir } from "./proc.ts";
import { log, num, ratio, type Section } from "./report.ts";

/**
 * What lint before sign costs (docs/lint.md): the same work with the gate
 * on and off, in the same process, alternating rounds so drift hits both.
 * - leaf certificates: buildLeafCertificate (tls-server-like template, P-256
 *   issuer key in SoftHSM2), 8 concurrent callers: the signing part of the
 *   issuance hot path;
 * - OCSP responses: buildOcspResponse signed by the CA key, 8 callers;
 * - a CRL of 100,000 entries (decoded without its entries) and of 1,000
 *   (entries decoded one by one): one build each, best of the rounds.
 * BENCH_LINT_ROUND_MS shortens the rounds (default 3000 ms).
 */
const ROUND_MS = Number(process.env.BENCH_LINT_ROUND_MS ?? 3000);
const ROUNDS = 3;
const CALLERS = 8;

export async function runLint(): Promise<Section> {
  const dataDir = tempDir("hsmca-bench-lint-");
  const config = loadConfig({ HSM_CA_DATA_DIR: dataDir });
  const hsm = Hsm.open(config.hsm, dataDir);
  try {
    const key = await hsm.generateKey("bench/lint-ca", "ecdsa-p256");
    const signer = hsm.signer("bench/lint-ca", "ecdsa-p256");
    const now = Date.now();
    const issuer = await buildRootCertificate({ subject: "CN=bench lint CA", spki: key.spki, serial: newSerial(), notBefore: new Date(now - 3_600_000), notAfter: new Date(now + 365 * 86_400_000), signer, pathLength: 1 });
    await throwawayKey("ecdsa-p256");
    const leafKey = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ format: "der", type: "spki" });
    const leaf = () =>
      buildLeafCertificate({
        decision: {
          subject: [["CN", "web.example.test"]],
          sans: [{ type: "dns", value: "web.example.test" }],
          sanCritical: false,
          keyUsage: ["digitalSignature"],
          extendedKeyUsage: ["1.3.6.1.5.5.7.3.1"],
          notBefore: new Date(Date.now() - 60_000),
          notAfter: new Date(Date.now() + 3_600_000),
        },
        spki: leafKey,
        serial: newSerial(),
        issuer,
        signer,
        algorithm: "ecdsa-p256",
        lint: { profile: { name: "tls-server", sanRequired: true, sanTypes: ["dns", "ip"], dnsSuffixes: ["example.test"], commonNameFromSans: true } },
      });
    const responder = { certificate: issuer, signer, keyAlgorithm: "ecdsa-p256" as const, includeCertificate: false };
    const hashes = issuerHashes(issuer);
    const ocsp = () => {
      const t = new Date();
      return buildOcspResponse({ responder, certId: buildCertId(hashes, "sha1", newSerial()), status: { status: "good" }, producedAt: t, thisUpdate: t, nextUpdate: new Date(t.getTime() + 3_600_000) });
    };
    const entries = (n: number): CrlEntry[] => Array.from({ length: n }, () => ({ serial: newSerial(), revokedAt: new Date(now - 60_000) }));
    const big = entries(100_000);
    const small = entries(1_000);
    const crlMs = async (list: CrlEntry[]) => {
      const t0 = performance.now();
      await buildCrl({ issuer, signer, keyAlgorithm: "ecdsa-p256", crlNumber: 2n, previousNumber: 1n, thisUpdate: new Date(), nextUpdate: new Date(Date.now() + 3_600_000), entries: list });
      return performance.now() - t0;
    };

    const r = { leafOn: [] as number[], leafOff: [] as number[], ocspOn: [] as number[], ocspOff: [] as number[], bigOn: [] as number[], bigOff: [] as number[], smallOn: [] as number[], smallOff: [] as number[] };
    setLintEnabled(true);
    await callsPerSecond(300, CALLERS, leaf);
    for (let round = 0; round < ROUNDS; round++) {
      for (const on of [true, false]) {
        setLintEnabled(on);
        (on ? r.leafOn : r.leafOff).push(await callsPerSecond(ROUND_MS, CALLERS, leaf));
        (on ? r.ocspOn : r.ocspOff).push(await callsPerSecond(ROUND_MS / 2, CALLERS, ocsp));
        (on ? r.bigOn : r.bigOff).push(await crlMs(big));
        (on ? r.smallOn : r.smallOff).push(await crlMs(small));
      }
      log(`lint round ${round + 1}: leaf on ${num(r.leafOn.at(-1)!)}/s off ${num(r.leafOff.at(-1)!)}/s; OCSP on ${num(r.ocspOn.at(-1)!)}/s off ${num(r.ocspOff.at(-1)!)}/s`);
    }
    setLintEnabled(true);
    const best = (xs: number[]) => Math.max(...xs);
    const least = (xs: number[]) => Math.min(...xs);
    const perObjectUs = (on: number, off: number) => num((1 / on - 1 / off) * 1e6);
    return {
      name: "lint",
      title: "Lint before sign: what the gate costs",
      summary: `The same work with the lint gate on and off (\`HSM_CA_LINT\`), in one process, on one SoftHSM2 token with a P-256
CA key: leaf certificates as issuance builds them (\`buildLeafCertificate\`, a tls-server-like template, ${CALLERS} concurrent
callers), OCSP responses signed by the CA key (${CALLERS} callers), and one CRL of 100,000 and one of 1,000 entries.
${ROUNDS} alternating rounds of ${ROUND_MS / 1000} s; the best of each counts. The gate signs with a throwaway key of the same
algorithm, decodes with OpenSSL and @peculiar/asn1-x509 / asn1-ocsp, and checks (docs/lint.md).`,
      tables: [
        {
          headers: ["object", "lint on", "lint off", "on / off", "added time per object (throughput)"],
          rows: [
            ["leaf certificate (signed/s)", num(best(r.leafOn)), num(best(r.leafOff)), ratio(best(r.leafOn), best(r.leafOff)), `${perObjectUs(best(r.leafOn), best(r.leafOff))} µs`],
            ["OCSP response (signed/s)", num(best(r.ocspOn)), num(best(r.ocspOff)), ratio(best(r.ocspOn), best(r.ocspOff)), `${perObjectUs(best(r.ocspOn), best(r.ocspOff))} µs`],
            ["CRL, 100,000 entries (ms)", num(least(r.bigOn)), num(least(r.bigOff)), ratio(least(r.bigOn), least(r.bigOff)), `${num(least(r.bigOn) - least(r.bigOff))} ms`],
            ["CRL, 1,000 entries (ms)", num(least(r.smallOn)), num(least(r.smallOff)), ratio(least(r.smallOn), least(r.smallOff)), `${num(least(r.smallOn) - least(r.smallOff))} ms`],
          ],
        },
      ],
      facts: { HSM: "SoftHSM2 (embedded token)", sessions: String(config.hsm.sessions), "CA key": "ecdsa-p256" },
      notes: [
        "Added time per object: 1/rate with the gate on minus 1/rate with it off; on a 2-core machine the gate's CPU competes with SoftHSM2's, so this is what it costs in throughput, not its latency alone.",
        "REST issuance end to end also spends time in TLS, JSON, the CSR check and the database (see the issuance section): the gate's share there is smaller than in this table.",
      ],
    };
  } finally {
    hsm.close();
  }
}
