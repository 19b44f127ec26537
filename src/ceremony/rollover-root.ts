import * as x509 from "@peculiar/x509";
import { pathLengthOf } from "../ca/ca-certificate.ts";
import type { HierarchyConfig } from "../config.ts";
import type { KeyManager } from "../hsm/key-manager.ts";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import type { RevocationUrls } from "../revocation/urls.ts";
import { activeCa, changeCaStatus, incomingRoot, type CaRow } from "../store/cas.ts";
import { insertCeremony } from "../store/ceremonies.ts";
import type { Database } from "../store/database.ts";
import { LOCKS, withAdvisoryLock } from "../store/locks.ts";
import { hasLiveCrossCertificate } from "../store/cross-certificates.ts";
import type { KeyChoice } from "./ca-key.ts";
import { crossEntryFor, crossSignRoot, resignIntermediate } from "./cross-sign.ts";
import { createRoot, entryFor, type Transcript } from "./init-hierarchy.ts";
import { nextGeneration } from "./rotate.ts";

/** A rollover that cannot be done now; the message says why and what to do. */
export class RolloverError extends Error {}

export interface RolloverOptions {
  /** Default: the old root's subject with its generation counted up ("Root CA" -> "Root CA 2"). */
  subject?: string;
  algorithm?: CaKeyAlgorithm;
  validityDays?: number;
}

/**
 * Starts a root rollover, under the hierarchy lock: a new root key in the
 * HSM (on the root token) and its self-signed certificate, stored as the
 * "incoming" root; the old root cross-signs the new root's key, and the new
 * root re-signs the active intermediate. From then on what the intermediate
 * issues verifies against either root: the old one with the usual chain,
 * the new one with the re-signed intermediate (an alternate chain), and the
 * old one again through the cross certificate. `retireRoot` ends it.
 */
export async function rolloverRoot(
  hsm: KeyManager,
  db: Database,
  hierarchy: HierarchyConfig,
  options: RolloverOptions,
  urls: RevocationUrls | undefined,
  /** A key already on the root token for the new root (a vendor ceremony); default: a new one. */
  keyChoice?: KeyChoice,
): Promise<{ transcript: Transcript; root: CaRow }> {
  return withAdvisoryLock(db, LOCKS.hierarchy, async (tx) => {
    const old = await activeCa(tx, "root");
    if (old?.keyOrigin === "external") {
      throw new RolloverError(`the root ${old.subject} is external: its key is not hsm-ca's, so hsm-ca cannot roll it over (its owner replaces it and signs a new intermediate)`);
    }
    const intermediate = await activeCa(tx, "intermediate");
    if (!old || !intermediate) throw new RolloverError("there is no active root and intermediate to roll over: run `hsm-ca init`");
    const pending = await incomingRoot(tx);
    if (pending) throw new RolloverError(`a root rollover is under way already (incoming root ${pending.subject}): finish it with \`hsm-ca ceremony retire-root\` first`);
    if (!hsm.hasKey(old.keyLabel)) {
      throw new RolloverError(`the root key is not available (token "${hsm.status.rootToken.label}"${hsm.status.rootToken.present ? "" : " is not present"}): the old root must cross-sign the new one`);
    }
    const subject = options.subject ?? nextGeneration(old.subject);
    const cn = (dn: string) => new x509.Name(dn).getField("CN")[0];
    if (cn(subject) === cn(old.subject)) {
      throw new RolloverError(`the new root needs a common name other than the old root's (${old.subject}): clients pick a chain by its root's common name`);
    }
    const root = await createRoot(hsm, tx, {
      rootSubject: subject,
      rootAlgorithm: options.algorithm ?? hierarchy.rootAlgorithm,
      rootValidityDays: options.validityDays ?? hierarchy.rootValidityDays,
      intermediatePathLength: hierarchy.intermediatePathLength,
    }, keyChoice);
    await changeCaStatus(tx, root.id, "active", "incoming");
    const cross = await crossSignRoot(hsm, tx, root, old, urls);
    const resigned = await resignIntermediate(hsm, tx, intermediate, root, urls, hierarchy.intermediatePathLength);
    const warnings: string[] = [];
    const oldLimit = pathLengthOf(new x509.X509Certificate(old.certificatePem));
    const newLimit = pathLengthOf(new x509.X509Certificate(root.certificatePem)) ?? 0;
    if (oldLimit !== undefined && oldLimit < newLimit + 1) {
      warnings.push(
        `the old root's path length (${oldLimit}) leaves no room for the cross certificate and an intermediate below it: ` +
          `relying parties that enforce a trust anchor's path length (Go) will not accept the path through the cross certificate; the re-signed and the old chains are unaffected`,
      );
    }
    const transcript: Transcript = {
      ceremony: "rollover-root",
      at: new Date().toISOString(),
      token: hsm.status.rootToken.label,
      created: [await entryFor(hsm, { ...root, status: "incoming" })],
      crossCertificates: [crossEntryFor(cross), crossEntryFor(resigned)],
      ...(warnings.length ? { warnings } : {}),
    };
    await insertCeremony(tx, "rollover-root", { ...transcript, oldRoot: { id: old.id, subject: old.subject, serial: old.serial } });
    return { transcript, root: { ...root, status: "incoming" } };
  });
}

/**
 * Ends a root rollover: the incoming root becomes the active one (the
 * default chain now leads to it, /ca/root.pem serves it) and the old root
 * is retired. The old root is no longer the default but stays trusted
 * where it was: its key keeps signing its CRL and OCSP answers, it stays
 * in /ca/bundle.pem and the SPIFFE bundle until it expires or is revoked,
 * and ACME offers the chain to it as an alternate. The active intermediate
 * must have a certificate under the new root: made here when the new
 * root's key is available and it has none (it was rotated while the
 * root token was away), else refused.
 */
export async function retireRoot(
  hsm: KeyManager,
  db: Database,
  hierarchy: HierarchyConfig,
  urls: RevocationUrls | undefined,
): Promise<{ transcript: Transcript; retired: CaRow; root: CaRow }> {
  return withAdvisoryLock(db, LOCKS.hierarchy, async (tx) => {
    const incoming = await incomingRoot(tx);
    if (!incoming) throw new RolloverError("no root rollover is under way: start one with `hsm-ca ceremony rollover-root`");
    const old = await activeCa(tx, "root");
    const intermediate = await activeCa(tx, "intermediate");
    if (!old || !intermediate) throw new RolloverError("there is no active root and intermediate: the hierarchy is incomplete");
    const crossCertificates = [];
    if (intermediate.parentId !== incoming.id && !(await hasLiveCrossCertificate(tx, intermediate.id, incoming.id, new Date()))) {
      if (!hsm.hasKey(incoming.keyLabel)) {
        throw new RolloverError(
          `the active intermediate ${intermediate.subject} has no certificate under the new root, and the new root's key is not available ` +
            `(token "${hsm.status.rootToken.label}"${hsm.status.rootToken.present ? "" : " is not present"}): run this with the root token present`,
        );
      }
      crossCertificates.push(crossEntryFor(await resignIntermediate(hsm, tx, intermediate, incoming, urls, hierarchy.intermediatePathLength)));
    }
    await changeCaStatus(tx, old.id, "active", "retired");
    await changeCaStatus(tx, incoming.id, "incoming", "active");
    const root = { ...incoming, status: "active" as const };
    const transcript: Transcript = {
      ceremony: "retire-root",
      at: new Date().toISOString(),
      token: hsm.status.rootToken.label,
      created: [],
      ...(crossCertificates.length ? { crossCertificates } : {}),
    };
    await insertCeremony(tx, "retire-root", {
      ...transcript,
      active: { id: root.id, subject: root.subject, serial: root.serial },
      retired: { id: old.id, subject: old.subject, serial: old.serial },
    });
    return { transcript, retired: { ...old, status: "retired" }, root };
  });
}
