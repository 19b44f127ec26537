import "reflect-metadata";
import fs from "node:fs";
import { Hsm } from "./src/hsm/hsm.ts";
const dir = "/tmp/tpm2h/soft";
process.env.SOFTHSM2_CONF = dir + "/softhsm2.conf";
const hsm = Hsm.open({ module: "/usr/lib/softhsm/libsofthsm2.so", tokenLabel: "hsmca-dev", pinSource: { file: dir + "/user.pin" }, sessions: 4, queueLimit: 10000, embedded: false }, "/tmp/tpm2h/x");
const label = "bench-" + process.argv[2];
if (!hsm.hasKey(label)) await hsm.generateKey(label, "ecdsa-p256");
const signer = hsm.signer(label, "ecdsa-p256");
const data = new Uint8Array(64);
const once = () => signer.use((key, c) => c.subtle.sign(signer.signingAlgorithm as any, key, data));
for (let i = 0; i < 2000; i++) await once();
const results: number[] = [];
for (let r = 0; r < 5; r++) {
  const n = 20000, t = performance.now();
  const conc = 8; let i = 0;
  await Promise.all(Array.from({ length: conc }, async () => { while (i++ < n) await once(); }));
  results.push(Math.round(n / ((performance.now() - t) / 1000)));
}
console.log(process.argv[2], "signs/s (8 concurrent, 5 runs):", results.join(" "));
hsm.close();
