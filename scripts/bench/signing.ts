import crypto from "node:crypto";
import fs from "node:fs";
import * as graphene from "graphene-pk11";
import { Crypto as P11Crypto } from "node-webcrypto-p11";
import { loadConfig } from "../../src/config.ts";
import { Hsm } from "../../src/hsm/hsm.ts";
import { KEY_ALGORITHM_SPECS } from "../../src/hsm/key-algorithms.ts";
import { callsPerSecond, RawSigner } from "./raw-sign.ts";
import { tempDir } from "./proc.ts";
import { log, num, ratio, type Section } from "./report.ts";

/**
 * Signatures per second on one SoftHSM2 token, ECDSA P-256, in one process:
 * - the ceiling: raw pkcs11js C_SignInit + asynchronous C_Sign over a 32-byte
 *   digest, one loop per session, as many sessions as the service's pool;
 * - the project's provider: `hsm.signer(label).use((key, c) => c.subtle.sign(...))`
 *   over a 400-byte TBS (hash in software, pool lease, key-use event), with
 *   twice as many concurrent callers as sessions so the pool stays full;
 * - for reference, node-webcrypto-p11's `subtle.sign` on the same sessions
 *   (what the project signed with before its own provider).
 * Rounds alternate ceiling and provider so drift hits both; the best round of each counts.
 */

const ROUND_MS = Number(process.env.BENCH_SIGN_ROUND_MS ?? 4000);
const ROUNDS = 3;
const LABEL = "bench/sign-p256";

export async function runSigning(): Promise<Section> {
  const dataDir = tempDir("hsmca-bench-sign-");
  const config = loadConfig({ HSM_CA_DATA_DIR: dataDir });
  const sessions = config.hsm.sessions;
  const hsm = Hsm.open(config.hsm, dataDir);
  let rawSigner: RawSigner | undefined;
  try {
    const key = await hsm.generateKey(LABEL, "ecdsa-p256");
    rawSigner = new RawSigner(config.hsm, LABEL, sessions);
    const opened = rawSigner.sessions;
    const signer = hsm.signer(LABEL, "ecdsa-p256");
    const tbs = crypto.randomBytes(400);
    const providerSign = () => signer.use((k, c) => c.subtle.sign(signer.signingAlgorithm, k, tbs));

    const p11 = opened.map((session) => new P11Crypto({ session } as never));
    const p11Keys = await Promise.all(
      p11.map(async (c) => {
        const obj = opened[0]!.find({ class: graphene.ObjectClass.PRIVATE_KEY, label: LABEL }).items(0);
        const id = `private-${obj.handle.toString("hex")}-${(obj.getAttribute("id") as Buffer).toString("hex")}`;
        return c.keyStorage.getItem(id, KEY_ALGORITHM_SPECS["ecdsa-p256"].keyParams, false, ["sign"]);
      }),
    );
    const p11Sign = (i: number) => p11[i]!.subtle.sign(signer.signingAlgorithm, p11Keys[i]!, tbs);

    // Correctness first: the provider's signatures verify with the public key.
    const publicKey = crypto.createPublicKey({ key: Buffer.from(key.spki), format: "der", type: "spki" });
    for (let i = 0; i < 20; i++) {
      const sig = Buffer.from(await providerSign());
      if (!crypto.verify("sha256", tbs, { key: publicKey, dsaEncoding: "ieee-p1363" }, sig)) throw new Error("a provider signature did not verify");
    }

    const raw: number[] = [];
    const provider: number[] = [];
    const legacy: number[] = [];
    const rate = callsPerSecond;
    await rawSigner.rate(500);
    await rate(500, sessions * 2, providerSign);
    for (let r = 0; r < ROUNDS; r++) {
      raw.push(await rawSigner.rate(ROUND_MS));
      provider.push(await rate(ROUND_MS, sessions * 2, providerSign));
      if (r === 0) legacy.push(await rate(ROUND_MS / 2, sessions, p11Sign));
      log(`signing round ${r + 1}: raw ${num(raw.at(-1)!)}/s, provider ${num(provider.at(-1)!)}/s`);
    }
    const best = (xs: number[]) => Math.max(...xs);
    const ceiling = best(raw);
    const target = 0.5;
    const providerRatio = best(provider) / ceiling;
    return {
      name: "signing",
      title: "HSM signatures: raw PKCS#11 ceiling and the project's WebCrypto provider",
      summary: `ECDSA P-256 signatures per second on one SoftHSM2 token in one process, ${sessions} sessions (the service's
pool size, \`HSM_CA_HSM_SESSIONS\`). Ceiling: raw pkcs11js \`C_SignInit\` + asynchronous \`C_Sign\` over a 32-byte digest,
one loop per session. Provider: \`hsm.signer(label).use((key, c) => c.subtle.sign(...))\` over a 400-byte TBS (SHA-256 in
software, a pool lease, a key-use event), ${sessions * 2} concurrent callers. node-webcrypto-p11's \`subtle.sign\` on the same
sessions is shown for reference. ${ROUNDS} rounds of ${ROUND_MS / 1000} s, alternating; the best of each counts.`,
      tables: [
        {
          headers: ["path", "signatures/s (best)", "vs raw C_Sign", "each round", "target"],
          rows: [
            ["ceiling: raw C_Sign", num(ceiling), "1×", raw.map((x) => num(x)).join(", "), ""],
            ["hsm-ca WebCrypto provider", num(best(provider)), ratio(best(provider), ceiling), provider.map((x) => num(x)).join(", "), `≥ 0.5×: ${providerRatio >= target ? "met" : `missed by ${num((target - providerRatio) * 100)} points`}`],
            ["node-webcrypto-p11 subtle.sign (before)", num(best(legacy)), ratio(best(legacy), ceiling), legacy.map((x) => num(x)).join(", "), ""],
          ],
        },
      ],
      facts: { "HSM": "SoftHSM2 (embedded token)", sessions: String(sessions), "UV_THREADPOOL_SIZE": process.env.UV_THREADPOOL_SIZE ?? "4 (default)" },
      notes: ["20 provider signatures verified with the key's public half (node:crypto) before timing."],
    };
  } finally {
    rawSigner?.close();
    hsm.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}
