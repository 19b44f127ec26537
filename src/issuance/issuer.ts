import * as x509 from "@peculiar/x509";
import { Rejection } from "../errors.ts";
import type { KeyManager, Signer } from "../hsm/key-manager.ts";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import { activeCa, chainPemOf, type CaRow } from "../store/cas.ts";
import type { Database } from "../store/database.ts";

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
  };
}
