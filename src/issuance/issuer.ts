import * as x509 from "@peculiar/x509";
import { Rejection } from "../errors.ts";
import type { KeyManager, Signer } from "../hsm/key-manager.ts";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import { activeCa, chainPemOf, listCas, type CaRow } from "../store/cas.ts";
import { listCrossCertificates } from "../store/cross-certificates.ts";
import type { Database } from "../store/database.ts";
import { chainsOf } from "./chains.ts";

/** The CA that signs new certificates now, with what clients need to chain to the root. */
export interface ActiveIssuer {
  row: CaRow;
  certificate: x509.X509Certificate;
  signer: Signer;
  /** The issuing key's algorithm. */
  algorithm: CaKeyAlgorithm;
  root: CaRow;
  /** Certificates between a leaf and the root (the intermediate, and any external intermediates above it), PEM. */
  chainPem: string;
  rootPem: string;
  /**
   * The other ways to a trusted root during and after a root rollover (the
   * intermediate re-signed under the other root, or through a cross
   * certificate), each ending at a different root; empty otherwise.
   */
  alternateChains: Array<{ rootSubject: string; chainPem: string }>;
}

export async function loadActiveIssuer(db: Database, hsm: KeyManager): Promise<ActiveIssuer> {
  const row = await activeCa(db, "intermediate");
  const root = await activeCa(db, "root");
  if (!row || !root) {
    throw new Rejection(
      "ca-not-ready",
      root?.keyOrigin === "external"
        ? "no active intermediate below the external root: import its signed certificate with `hsm-ca ceremony import-intermediate`"
        : "no active root and intermediate CA: run `hsm-ca init`",
    );
  }
  return {
    row,
    certificate: new x509.X509Certificate(row.certificatePem),
    signer: hsm.signer(row.keyLabel, row.keyAlgorithm as CaKeyAlgorithm),
    algorithm: row.keyAlgorithm as CaKeyAlgorithm,
    root,
    chainPem: (await chainPemOf(db, row.id)) ?? row.certificatePem,
    rootPem: root.certificatePem,
    ...(await rolloverChains(db, row.id)),
  };
}

/**
 * After a root rollover the default chain is the one to the active root (the
 * intermediate re-signed under it); the other roots' chains are alternates.
 * Without a rollover this leaves chainPem as it is, with no alternates.
 */
async function rolloverChains(db: Database, issuerId: number): Promise<Pick<ActiveIssuer, "alternateChains"> & { chainPem?: string }> {
  const crossCertificates = await listCrossCertificates(db);
  if (crossCertificates.length === 0) return { alternateChains: [] };
  const chains = chainsOf(issuerId, await listCas(db), crossCertificates, new Date());
  if (!chains) return { alternateChains: [] };
  return {
    chainPem: chains.default.chainPem,
    alternateChains: chains.alternates.map((c) => ({ rootSubject: c.rootSubject, chainPem: c.chainPem })),
  };
}

/** Whether the hierarchy changed under a loaded issuer without a rotation (a root rollover or its end): reload then. */
export async function issuerChainsChanged(db: Database, issuer: ActiveIssuer): Promise<boolean> {
  const now = await rolloverChains(db, issuer.row.id);
  // No cross certificate, before or now: no rollover has happened, nothing here to watch.
  if (now.chainPem === undefined && issuer.alternateChains.length === 0) return false;
  if (JSON.stringify(now.alternateChains) !== JSON.stringify(issuer.alternateChains)) return true;
  if (now.chainPem !== undefined && now.chainPem !== issuer.chainPem) return true;
  const root = await activeCa(db, "root");
  return root !== undefined && root.id !== issuer.root.id;
}
