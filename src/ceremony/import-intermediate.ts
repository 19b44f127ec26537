import { sha256Hex } from "../ca/fingerprint.ts";
import type { KeyManager } from "../hsm/key-manager.ts";
import { isCaKeyAlgorithm, type CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import { activeCa, insertCa, isExternal, listCas, replaceCaCertificate, retireCa, type CaRow } from "../store/cas.ts";
import { insertCeremony } from "../store/ceremonies.ts";
import type { Database } from "../store/database.ts";
import { LOCKS, withAdvisoryLock } from "../store/locks.ts";
import { completePendingCa, waitingPendingCas, type PendingCaRow } from "../store/pending-cas.ts";
import { caKeyFor, type KeyChoice } from "./ca-key.ts";
import { keyAlgorithmOf, pathToRoot, readCertificates, requireCa, requireValidNow, spkiSha256, type CertificateFile } from "./certificate-checks.ts";
import { ExternalCaError } from "./external-ca-error.ts";
import { externalCaRow } from "./external-root.ts";
import { caRow, entryFor, type Transcript } from "./init-hierarchy.ts";
import { pendingKeySha256 } from "./pending-intermediate.ts";

export interface ImportInput {
  /** The signed intermediate, PEM; certificates after the first count as --chain ones (CAs often return the chain in one file). */
  certPem: string;
  certName: string;
  /** Certificates between the external root and the intermediate, PEM (the root itself may be among them). */
  chainPem?: string;
  chainName?: string;
  /** A key already on the token instead of a waiting one (adopted through caKeyFor). */
  keyChoice?: KeyChoice;
  now?: Date;
}

export interface ImportOutcome {
  row: CaRow;
  /** The external intermediates between the root and ours, nearest first (stored or found stored). */
  between: CaRow[];
  retired?: CaRow;
  completed?: PendingCaRow;
  transcript: Transcript;
}

/**
 * Activates an intermediate certificate the external root signed for a key
 * in the HSM. Checked before anything changes: the key is the waiting one
 * (or the chosen one), the certificate is a CA that may sign certificates
 * and CRLs, it is valid now, and it chains to the stored external root
 * (through the --chain certificates: signatures, validity, CA flags, path
 * lengths). Then, in one transaction under the hierarchy lock: the
 * certificates between are stored as external intermediates (the chain
 * served with every certificate), ours becomes the active intermediate
 * below them, the previous one is retired (a rotation), the waiting key is
 * marked done, and the transcript is stored.
 */
export async function importIntermediate(hsm: KeyManager, db: Database, input: ImportInput): Promise<ImportOutcome> {
  const now = input.now ?? new Date();
  const [cert, ...extra] = readCertificates(input.certPem, input.certName) as [CertificateFile, ...CertificateFile[]];
  const candidates = [...extra, ...(input.chainPem !== undefined ? readCertificates(input.chainPem, input.chainName ?? "--chain") : [])];
  const root = await activeCa(db, "root");
  if (!root || !isExternal(root)) {
    throw new ExternalCaError(root ? `the root ${root.subject} is hsm-ca's own: import-intermediate is for a hierarchy below an external root` : "there is no external root: run hsm-ca init --external-root ROOT.pem first");
  }
  const keySha = spkiSha256(cert.cert.publicKey);
  const key = await keyFor(hsm, db, cert, keySha, input.keyChoice);
  requireCa(cert, true);
  requireValidNow(cert, now);
  const rootFile = readCertificates(root.certificatePem, "the stored external root")[0]!;
  const between = pathToRoot(cert, candidates, rootFile, now);
  const fingerprint = sha256Hex(cert.cert.rawData);

  return withAdvisoryLock(db, LOCKS.hierarchy, async (tx) => {
    const cas = await listCas(tx);
    const again = cas.find((c) => c.fingerprintSha256 === fingerprint);
    if (again) throw new ExternalCaError(`${input.certName} was imported already: it is CA #${again.id} (${again.status})`);
    const sameKey = cas.find((c) => c.keyLabel === key.label);
    if (sameKey) throw new ExternalCaError(`the key "${key.label}" belongs to CA #${sameKey.id} (${sameKey.subject}) already`);
    if ((await activeCa(tx, "root"))?.id !== root.id) throw new ExternalCaError("the root changed meanwhile: run the import again");
    const previous = await activeCa(tx, "intermediate");

    // Top down: each external intermediate's parent is the one above it.
    let parentId = root.id;
    const stored: CaRow[] = [];
    for (const c of [...between].reverse()) {
      const row = await storeExternalIntermediate(tx, cas, c, parentId);
      stored.unshift(row);
      parentId = row.id;
    }
    const row = await insertCa(tx, { ...caRow("intermediate", cert.cert, key.label, key.id, key.algorithm, parentId), keyOrigin: key.origin });
    if (previous) await retireCa(tx, previous.id);
    // External intermediates no longer above the active one are served no more.
    for (const c of cas) if (isExternal(c) && c.role === "intermediate" && c.status === "active" && !stored.some((s) => s.id === c.id)) await retireCa(tx, c.id);
    if (key.pending && !(await completePendingCa(tx, key.pending.id, row.id, now))) {
      throw new ExternalCaError(`the waiting key ${key.pending.keyLabel} was imported meanwhile`);
    }
    const transcript: Transcript = { ceremony: "import-intermediate", at: now.toISOString(), token: hsm.status.tokenLabel, created: [await entryFor(hsm, row)] };
    await insertCeremony(tx, "import-intermediate", {
      ...transcript,
      root: { id: root.id, subject: root.subject, fingerprintSha256: root.fingerprintSha256 },
      between: stored.map((s) => ({ id: s.id, subject: s.subject, fingerprintSha256: s.fingerprintSha256 })),
      ...(previous ? { retired: { id: previous.id, subject: previous.subject, keyLabel: previous.keyLabel } } : {}),
      ...(key.pending ? { pendingId: key.pending.id, reason: key.pending.reason } : {}),
    });
    return { row, between: stored, retired: previous, completed: key.pending, transcript };
  });
}

interface ImportKey {
  label: string;
  id: string;
  algorithm: CaKeyAlgorithm;
  origin: "generated" | "adopted";
  /** The waiting key this certificate completes. */
  pending?: PendingCaRow;
}

/** The HSM key the certificate certifies: a waiting one whose public key it carries, or the one chosen with --key-label/--key-id. */
async function keyFor(hsm: KeyManager, db: Database, cert: CertificateFile, keySha: string, choice: KeyChoice | undefined): Promise<ImportKey> {
  if (choice?.label !== undefined || choice?.id !== undefined) {
    const algorithm = keyAlgorithmOf(cert.cert.publicKey);
    if (!isCaKeyAlgorithm(algorithm)) throw new ExternalCaError(`${cert.name} certifies an ${algorithm} key: hsm-ca's CA keys are ecdsa-p256, ecdsa-p384 or RSA`);
    // One key, one CA: caKeyFor refuses a key that a CA or a waiting key in this database has.
    const key = await caKeyFor(hsm, "intermediate", algorithm, { ...choice, algorithm, db });
    if (sha256Hex(key.spki) !== keySha) throw new ExternalCaError(`${cert.name} certifies another key than "${key.label}" (public key sha256 ${keySha})`);
    return { label: key.label, id: key.id, algorithm: key.algorithm, origin: key.origin };
  }
  const waiting = await waitingPendingCas(db);
  const pending = waiting.find((p) => pendingKeySha256(p) === keySha);
  if (!pending) {
    const what = waiting.length ? `the waiting key is ${waiting.map((p) => `${p.keyLabel} (${p.subject})`).join(", ")}` : "no key is waiting for a certificate";
    throw new ExternalCaError(`${cert.name} (${cert.cert.subject}) certifies a key hsm-ca is not waiting for (public key sha256 ${keySha}): ${what}`);
  }
  const algorithm = pending.keyAlgorithm as CaKeyAlgorithm;
  // The database and the token must agree: a restored database beside another token would activate a key that is not there.
  if (!hsm.hasKey(pending.keyLabel)) throw new ExternalCaError(`the waiting key "${pending.keyLabel}" is not on token "${hsm.status.tokenLabel}"`);
  if (sha256Hex(await hsm.publicKeySpki(pending.keyLabel, algorithm)) !== keySha) throw new ExternalCaError(`the key "${pending.keyLabel}" on the token is not the one its CSR carries`);
  return { label: pending.keyLabel, id: pending.keyId, algorithm, origin: pending.keyOrigin, pending };
}

/** An external intermediate's row, found by its key (the newer certificate kept when the external CA re-certified it), or made. */
async function storeExternalIntermediate(tx: Database, cas: CaRow[], c: CertificateFile, parentId: number): Promise<CaRow> {
  const row = externalCaRow("intermediate", c, parentId);
  const existing = cas.find((x) => x.keyLabel === row.keyLabel);
  if (!existing) return insertCa(tx, row);
  if (existing.role === "root") throw new ExternalCaError(`${c.name} (${c.cert.subject}) carries the key of the stored root`);
  if (existing.fingerprintSha256 === row.fingerprintSha256 && existing.parentId === parentId && existing.status === "active") return existing;
  return replaceCaCertificate(tx, existing.id, row);
}
