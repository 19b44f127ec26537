import { asc } from "drizzle-orm";
import type { Database } from "./database.ts";
import { cas, ocspResponders } from "./schema.ts";

/** An HSM key the database refers to, with the certificate that names its public half. */
export interface SigningKeyRow {
  role: "root" | "intermediate" | "ocsp";
  /** The CA's subject; for a responder, empty (its certificate says it). */
  subject: string;
  status: string;
  keyLabel: string;
  keyAlgorithm: string;
  certificatePem: string;
  /**
   * Set when the key was destroyed on purpose: it is not expected on the
   * token. A responder's key goes with its CA's (src/ceremony/destroy-retired-keys.ts).
   */
  keyDestroyedAt: Date | null;
}

/** Every CA key and every OCSP responder key, CAs first, each in creation order. */
export async function listSigningKeys(db: Database): Promise<SigningKeyRow[]> {
  const caRows = await db.select().from(cas).orderBy(asc(cas.id));
  const responderRows = await db.select().from(ocspResponders).orderBy(asc(ocspResponders.id));
  const destroyedAt = new Map(caRows.map((r) => [r.id, r.keyDestroyedAt]));
  return [
    ...caRows.map((r) => ({
      role: r.role,
      subject: r.subject,
      status: r.status,
      keyLabel: r.keyLabel,
      keyAlgorithm: r.keyAlgorithm,
      certificatePem: r.certificatePem,
      keyDestroyedAt: r.keyDestroyedAt,
    })),
    ...responderRows.map((r) => ({
      role: "ocsp" as const,
      subject: "",
      status: r.status,
      keyLabel: r.keyLabel,
      keyAlgorithm: r.keyAlgorithm,
      certificatePem: r.certificatePem,
      keyDestroyedAt: destroyedAt.get(r.issuerId) ?? null,
    })),
  ];
}
