import * as x509 from "@peculiar/x509";
import type { HierarchyConfig } from "../config.ts";
import type { KeyManager } from "../hsm/key-manager.ts";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import type { RevocationUrls } from "../revocation/urls.ts";
import { activeCa, isExternal, retireCa, type CaRow } from "../store/cas.ts";
import { insertCeremony } from "../store/ceremonies.ts";
import type { Database } from "../store/database.ts";
import { LOCKS, withAdvisoryLock } from "../store/locks.ts";
import type { PendingCaRow } from "../store/pending-cas.ts";
import type { KeyChoice } from "./ca-key.ts";
import { createIntermediate, entryFor, type Transcript } from "./init-hierarchy.ts";
import { awaitExternalSignature } from "./pending-intermediate.ts";

export interface RotationPlan {
  current: CaRow;
  root: CaRow;
  subject: string;
  algorithm: CaKeyAlgorithm;
  validityDays: number;
  pathLength: number;
}

/**
 * What a rotation would do: the next intermediate keeps the current one's
 * name with its generation number counted up ("Issuing CA 1" -> "Issuing CA
 * 2"), the configured key algorithm and lifetime.
 */
export async function planRotation(db: Database, hierarchy: IntermediateSettings): Promise<RotationPlan> {
  const current = await activeCa(db, "intermediate");
  const root = await activeCa(db, "root");
  if (!current || !root) throw new RotationError("there is no active root and intermediate to rotate: run `hsm-ca init`");
  return {
    current,
    root,
    subject: nextGeneration(current.subject),
    algorithm: hierarchy.intermediateAlgorithm,
    validityDays: hierarchy.intermediateValidityDays,
    pathLength: hierarchy.intermediatePathLength,
  };
}

export class RotationError extends Error {}

/** What a rotation takes from the configuration (or from an approved rotation request). */
export type IntermediateSettings = Pick<HierarchyConfig, "intermediateAlgorithm" | "intermediateValidityDays" | "intermediatePathLength">;

/**
 * Rotates the issuing intermediate in one database transaction: a new key in
 * the HSM, the root signs its certificate (the configured path length), the new CA becomes
 * active and the old one retired. The old key stays: it signs CRLs and OCSP
 * until its last certificate expires.
 *
 * Under an external root there is no root key to sign with: the rotation
 * prepares the next key and its CSR once (src/ceremony/pending-intermediate.ts)
 * and the current intermediate keeps issuing until `hsm-ca ceremony
 * import-intermediate` brings the signed certificate.
 */
export async function rotateIntermediate(
  hsm: KeyManager,
  db: Database,
  hierarchy: IntermediateSettings,
  urls: RevocationUrls | undefined,
  why: string,
  /** Decides, under the lock, whether to go ahead (a scheduled tick another replica took, a rule no longer due). */
  proceed: (tx: Database, plan: RotationPlan) => Promise<boolean> = async () => true,
  /** A key already on the token for the new intermediate (hsm-ca ceremony sign-intermediate --key-label); default: a new one. */
  keyChoice?: KeyChoice,
): Promise<RotationOutcome | undefined> {
  return withAdvisoryLock(db, LOCKS.hierarchy, async (tx) => {
    const plan = await planRotation(tx, hierarchy);
    if (!(await proceed(tx, plan))) return undefined;
    if (isExternal(plan.root)) {
      const { pending, prepared } = await awaitExternalSignature(hsm, tx, { subject: plan.subject, algorithm: plan.algorithm, reason: why, keyChoice });
      return { awaiting: pending, prepared };
    }
    requireRootKey(hsm, plan);
    const row = await createIntermediate(
      hsm,
      tx,
      plan.root,
      { intermediateSubject: plan.subject, intermediateAlgorithm: plan.algorithm, intermediateValidityDays: plan.validityDays, intermediatePathLength: plan.pathLength },
      urls,
      keyChoice,
    );
    await retireCa(tx, plan.current.id);
    const transcript: Transcript = {
      ceremony: "rotate",
      at: new Date().toISOString(),
      token: hsm.status.tokenLabel,
      created: [await entryFor(hsm, row)],
    };
    await insertCeremony(tx, "rotate", { ...transcript, retired: { id: plan.current.id, subject: plan.current.subject, keyLabel: plan.current.keyLabel }, why });
    return { transcript, row };
  });
}

export type RotationOutcome =
  | { transcript: Transcript; row: CaRow; awaiting?: undefined }
  /** Under an external root: the next key and CSR wait for its signature (prepared now, or waiting already). */
  | { awaiting: PendingCaRow; prepared: boolean; transcript?: undefined; row?: undefined };

/** Throws unless the root key is on a token now (an offline root is present only for ceremonies); an external root's key is never needed. */
export function requireRootKey(hsm: KeyManager, plan: RotationPlan): void {
  if (isExternal(plan.root)) return;
  if (!hsm.hasKey(plan.root.keyLabel)) {
    throw new RotationError(`the root key is not available (token "${hsm.status.rootToken.label}"${hsm.status.rootToken.present ? "" : " is not present"}): rotation needs the root`);
  }
}

/** "CN=Issuing CA 1, O=x" -> "CN=Issuing CA 2, O=x"; a CN without a number gets " 2". */
export function nextGeneration(subject: string): string {
  const name = new x509.Name(subject);
  const json = name.toJSON().map((rdn) => {
    const cn = rdn.CN;
    if (!cn) return rdn;
    return { ...rdn, CN: cn.map((v) => (/\s(\d+)$/.test(v) ? v.replace(/(\d+)$/, (n) => String(Number(n) + 1)) : `${v} 2`)) };
  });
  return new x509.Name(json).toString();
}
