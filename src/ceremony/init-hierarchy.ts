import { pemOf } from "../asn1/pem.ts";
import * as x509 from "@peculiar/x509";
import { buildIntermediateCertificate, buildRootCertificate, pathLengthUnder } from "../ca/ca-certificate.ts";
import { colonHex, sha256Hex } from "../ca/fingerprint.ts";
import { newSerial } from "../ca/serial.ts";
import type { HierarchyConfig } from "../config.ts";
import type { KeyManager, KeyProvenance } from "../hsm/key-manager.ts";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import { activeCa, insertCa, type CaRow } from "../store/cas.ts";
import { insertCeremony } from "../store/ceremonies.ts";
import type { Database } from "../store/database.ts";
import { LOCKS, withAdvisoryLock } from "../store/locks.ts";
import { pointersFor } from "../revocation/pointers.ts";
import type { RevocationUrls } from "../revocation/urls.ts";
import { adopts, caKeyFor, KeyChoiceError, type KeyChoice } from "./ca-key.ts";
import { keyWeaknesses } from "./key-weaknesses.ts";

export interface TranscriptEntry {
  role: "root" | "intermediate";
  subject: string;
  keyLabel: string;
  keyId: string;
  keyAlgorithm: CaKeyAlgorithm;
  publicKeySha256: string;
  /** generated: made by hsm-ca now; adopted: found on the token (made elsewhere). */
  keyOrigin: CaRow["keyOrigin"];
  provenance: KeyProvenance;
  /** An adopted key's weaknesses that --allow-weak-key let through (see key-weaknesses.ts); absent when none. */
  weakKeyAccepted?: string[];
  serial: string;
  certificateSha256: string;
  notBefore: string;
  notAfter: string;
}

export interface Transcript {
  ceremony: "init" | "rotate" | "create-root" | "sign-intermediate" | "sign-root-crl" | "destroy-key" | "import-intermediate";
  at: string;
  token: string;
  created: TranscriptEntry[];
}

/** CA certificates start an hour early so that every leaf's validity nests inside them. */
const CA_BACKDATE_MS = 3_600_000;
const DAY_MS = 86_400_000;

/**
 * Creates what is missing of root + issuing intermediate, and nothing else:
 * an existing CA is never replaced, and every new key gets a fresh label so
 * that no key on the token is ever overwritten. Replicas take turns.
 */
export async function initHierarchy(
  hsm: KeyManager,
  db: Database,
  opts: HierarchyConfig,
  urls?: RevocationUrls,
  /** Keys already on the token to adopt instead of making new ones (hsm-ca init --root-key-label ...). */
  keys: { root?: KeyChoice; intermediate?: KeyChoice } = {},
): Promise<Transcript | undefined> {
  return withAdvisoryLock(db, LOCKS.hierarchy, async (tx) => {
    const created: TranscriptEntry[] = [];
    let root = await activeCa(tx, "root");
    const intermediate = await activeCa(tx, "intermediate");
    requireUnusedChoice(root, keys.root);
    requireUnusedChoice(intermediate, keys.intermediate);
    // Check the key to adopt for the intermediate before a root key is made for nothing.
    if (!root && !intermediate && adopts(keys.intermediate)) {
      await caKeyFor(hsm, "intermediate", opts.intermediateAlgorithm, { ...keys.intermediate, db: tx });
    }
    if (!root) {
      root = await createRoot(hsm, tx, opts, keys.root);
      created.push(await entryFor(hsm, root));
    }
    // Under an external root the intermediate comes from `hsm-ca ceremony import-intermediate`: that root's key is not here.
    if (root.keyOrigin !== "external" && !intermediate) {
      const row = await createIntermediate(hsm, tx, root, opts, urls, keys.intermediate);
      created.push(await entryFor(hsm, row));
    }
    if (created.length === 0) return undefined;
    const transcript: Transcript = { ceremony: "init", at: new Date().toISOString(), token: hsm.status.tokenLabel, created };
    await insertCeremony(tx, "init", transcript);
    return transcript;
  });
}

/** A key to adopt for a CA that exists already: fine when it is that CA's key (init run again), refused otherwise. */
function requireUnusedChoice(existing: CaRow | undefined, choice: KeyChoice | undefined): void {
  if (!existing || !adopts(choice)) return;
  if ((choice!.label ?? existing.keyLabel) === existing.keyLabel && (choice!.id ?? existing.keyId) === existing.keyId) return;
  throw new KeyChoiceError(`an active ${existing.role} CA exists already (key "${existing.keyLabel}"): a key to adopt applies only when init creates the ${existing.role}`);
}

export async function createRoot(
  hsm: KeyManager,
  db: Database,
  opts: Pick<HierarchyConfig, "rootSubject" | "rootAlgorithm" | "rootValidityDays" | "intermediatePathLength">,
  keyChoice?: KeyChoice,
): Promise<CaRow> {
  const key = await caKeyFor(hsm, "root", opts.rootAlgorithm, keyChoice && { ...keyChoice, db: keyChoice.db ?? db });
  const now = Date.now();
  const cert = await buildRootCertificate({
    // Room for the intermediates below it and for the sub-CAs they may sign.
    pathLength: opts.intermediatePathLength + 1,
    subject: opts.rootSubject,
    spki: key.spki,
    serial: newSerial(),
    notBefore: new Date(now - CA_BACKDATE_MS),
    notAfter: new Date(now + opts.rootValidityDays * DAY_MS),
    signer: hsm.signer(key.label, key.algorithm),
  });
  return insertCa(db, { ...caRow("root", cert, key.label, key.id, key.algorithm, null), keyOrigin: key.origin });
}

export async function createIntermediate(
  hsm: KeyManager,
  db: Database,
  root: CaRow,
  opts: Pick<HierarchyConfig, "intermediateSubject" | "intermediateAlgorithm" | "intermediateValidityDays" | "intermediatePathLength">,
  urls?: RevocationUrls,
  keyChoice?: KeyChoice,
): Promise<CaRow> {
  const key = await caKeyFor(hsm, "intermediate", opts.intermediateAlgorithm, keyChoice && { ...keyChoice, db: keyChoice.db ?? db });
  const rootCert = new x509.X509Certificate(root.certificatePem);
  const now = Date.now();
  const notAfter = Math.min(now + opts.intermediateValidityDays * DAY_MS, rootCert.notAfter.getTime());
  const cert = await buildIntermediateCertificate({
    subject: opts.intermediateSubject,
    spki: key.spki,
    serial: newSerial(),
    notBefore: new Date(now - CA_BACKDATE_MS / 2),
    notAfter: new Date(notAfter),
    issuer: rootCert,
    pathLength: pathLengthUnder(rootCert, opts.intermediatePathLength),
    signer: hsm.signer(root.keyLabel, root.keyAlgorithm as CaKeyAlgorithm),
    revocation: urls && pointersFor(urls, root.id, null),
  });
  return insertCa(db, { ...caRow("intermediate", cert, key.label, key.id, key.algorithm, root.id), keyOrigin: key.origin });
}

export function caRow(
  role: CaRow["role"],
  cert: x509.X509Certificate,
  keyLabel: string,
  keyId: string,
  keyAlgorithm: CaKeyAlgorithm,
  parentId: number | null,
) {
  return {
    role,
    subject: cert.subject,
    keyLabel,
    keyId,
    keyAlgorithm,
    certificatePem: pemOf(cert),
    serial: cert.serialNumber.toLowerCase(),
    fingerprintSha256: sha256Hex(cert.rawData),
    spkiSha256: sha256Hex(cert.publicKey.rawData),
    parentId,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
  };
}

export async function entryFor(hsm: KeyManager, row: CaRow): Promise<TranscriptEntry> {
  const provenance = hsm.status.provenance(row.keyLabel);
  // What the token reports now is what the adoption checked (a moment ago, in the same ceremony).
  const weak = row.keyOrigin === "adopted" ? keyWeaknesses(provenance) : [];
  return {
    role: row.role,
    subject: row.subject,
    keyLabel: row.keyLabel,
    keyId: row.keyId,
    keyAlgorithm: row.keyAlgorithm as CaKeyAlgorithm,
    publicKeySha256: row.spkiSha256,
    keyOrigin: row.keyOrigin,
    provenance,
    ...(weak.length ? { weakKeyAccepted: weak } : {}),
    serial: row.serial,
    certificateSha256: row.fingerprintSha256,
    notBefore: row.notBefore.toISOString(),
    notAfter: row.notAfter.toISOString(),
  };
}

export function formatTranscript(t: Transcript): string {
  const lines = [`Key ceremony: ${t.ceremony} at ${t.at} on token "${t.token}"`];
  for (const e of t.created) {
    lines.push(
      "",
      `${e.role.toUpperCase()} CA  ${e.subject}`,
      `  key label            ${e.keyLabel}`,
      `  key id (CKA_ID)      ${e.keyId}`,
      `  key algorithm        ${e.keyAlgorithm}`,
      `  public key SHA-256   ${colonHex(e.publicKeySha256)}`,
      `  key origin           ${ORIGINS[e.keyOrigin] ?? e.keyOrigin}`,
      `  key provenance       ${formatProvenance(e.provenance)}`,
      ...(e.weakKeyAccepted ? [`  WEAK KEY accepted    ${e.weakKeyAccepted.join("; ")} (--allow-weak-key)`] : []),
      `  certificate serial   ${e.serial}`,
      `  certificate SHA-256  ${colonHex(e.certificateSha256)}`,
      `  valid                ${e.notBefore} .. ${e.notAfter}`,
    );
  }
  return lines.join("\n");
}

const ORIGINS: Record<string, string> = {
  generated: "generated (made on the token by hsm-ca)",
  adopted: "adopted (found on the token, made elsewhere; attributes as the token reports them)",
  external: "external (not on this token)",
};

/** The key's attributes on one line, as the transcript and `hsm-ca status` show them. */
export function formatProvenance(p: KeyProvenance): string {
  return `local=${p.local} sensitive=${p.sensitive} extractable=${p.extractable} neverExtractable=${p.neverExtractable} alwaysSensitive=${p.alwaysSensitive} private=${p.private} sign=${p.sign}`;
}
