// One CRL publication in a process of its own, so that its peak RSS is the
// publication's: run by scripts/bench/crl.ts with the service's environment
// (HSM_CA_DATA_DIR, DATABASE_URL, ...) while the service is stopped.
// BENCH_ISSUER_ID: the CA; BENCH_CRL_DIR: where full.der and delta.der go.
// Prints one line: CRL_WORKER {json}.
import "reflect-metadata";
import fs from "node:fs";
import path from "node:path";
import * as x509 from "@peculiar/x509";
import { buildCrl, type CrlEntry } from "../../src/ca/crl.ts";
import { loadConfig } from "../../src/config.ts";
import { Hsm } from "../../src/hsm/hsm.ts";
import type { CaKeyAlgorithm } from "../../src/hsm/key-algorithms.ts";
import { createLogger } from "../../src/logger.ts";
import { CrlPublisher } from "../../src/revocation/crl-publisher.ts";
import { RevocationUrls, WHOLE_ISSUER } from "../../src/revocation/urls.ts";
import { listCas } from "../../src/store/cas.ts";
import { revokedEntries } from "../../src/store/certificates.ts";
import { latestCrl, saveCrl } from "../../src/store/crls.ts";
import { openStore } from "../../src/store/database.ts";

const issuerId = Number(process.env.BENCH_ISSUER_ID);
const outDir = process.env.BENCH_CRL_DIR!;
const config = loadConfig(process.env);
const hsm = Hsm.open(config.hsm, config.dataDir);
const store = await openStore(config);
try {
  const publisher = new CrlPublisher({
    db: store.db,
    hsm,
    log: createLogger("error"),
    now: () => new Date(),
    // The URLs the service wrote into its certificates (its plain-HTTP listener).
    urls: () => new RevocationUrls(config.publicHttpUrl ?? "http://127.0.0.1"),
    settings: {
      partitions: config.revocation.crlPartitions,
      fullLifetimeMs: config.revocation.crlLifetimeMs,
      deltaLifetimeMs: config.revocation.crlDeltaLifetimeMs,
    },
  });
  const rssBeforeKiB = process.resourceUsage().maxRSS;
  const t0 = performance.now();
  await publisher.publishIssuerById(issuerId, { full: true });
  const ms = performance.now() - t0;
  const maxRssKiB = process.resourceUsage().maxRSS;

  // Where the time goes, measured after the peak was taken, each step alone
  // (warm caches): reading the entries, building and signing, storing, and
  // loading the stored CRL back (as the CRL route and the schedule do).
  let t = performance.now();
  const entries: CrlEntry[] = [];
  for await (const r of revokedEntries(store.db, { issuerId, notExpiredAt: new Date() })) {
    entries.push({ serial: r.serial, revokedAt: r.revokedAt, reason: r.reason ?? undefined, invalidityDate: r.invalidityDate ?? undefined });
  }
  const readMs = performance.now() - t;
  const full = await latestCrl(store.db, issuerId, WHOLE_ISSUER, "full");
  const delta = await latestCrl(store.db, issuerId, WHOLE_ISSUER, "delta");
  if (!full || !delta) throw new Error("no CRL was stored");
  const ca = (await listCas(store.db)).find((c) => c.id === issuerId)!;
  t = performance.now();
  const rebuilt = await buildCrl({
    issuer: new x509.X509Certificate(ca.certificatePem),
    signer: hsm.signer(ca.keyLabel, ca.keyAlgorithm as CaKeyAlgorithm),
    keyAlgorithm: ca.keyAlgorithm as CaKeyAlgorithm,
    crlNumber: full.crlNumber,
    thisUpdate: full.thisUpdate,
    nextUpdate: full.nextUpdate,
    entries,
  });
  const buildMs = performance.now() - t;
  if (Math.abs(rebuilt.length - full.der.length) > 200) throw new Error(`rebuilt CRL is ${rebuilt.length} bytes, the stored one ${full.der.length}`);
  t = performance.now();
  await saveCrl(store.db, full); // the same row again: an upsert of the same bytes
  const saveMs = performance.now() - t;
  t = performance.now();
  await latestCrl(store.db, issuerId, WHOLE_ISSUER, "full");
  const loadMs = performance.now() - t;

  fs.writeFileSync(path.join(outDir, "full.der"), full.der);
  fs.writeFileSync(path.join(outDir, "delta.der"), delta.der);
  const result = {
    ms,
    readMs,
    buildMs,
    saveMs,
    loadMs,
    rows: entries.length,
    rssBeforeKiB,
    maxRssKiB,
    fullEntries: full.entries,
    deltaEntries: delta.entries,
    fullBytes: full.der.length,
    deltaBytes: delta.der.length,
    fullNumber: String(full.crlNumber),
    deltaBase: String(delta.baseCrlNumber),
  };
  process.stdout.write(`CRL_WORKER ${JSON.stringify(result)}\n`);
} finally {
  await store.close();
  hsm.close();
}
