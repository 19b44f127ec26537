import crypto from "node:crypto";
import type { RevocationPointers } from "../ca/revocation-pointers.ts";
import { RevocationUrls, WHOLE_ISSUER } from "./urls.ts";

export interface RevocationPublishing {
  urls: RevocationUrls;
  /** CRL partitions per issuer; 0: none. */
  partitions: number;
}

/** A certificate's CRL partition: a stable spread by serial, or null when CRLs are not partitioned. */
export function crlPartitionOf(serial: string, partitions: number): number | null {
  if (partitions <= 0) return null;
  return crypto.createHash("sha256").update(serial).digest().readUInt32BE(0) % partitions;
}

/** The CRL DP and AIA a certificate from this issuer carries. */
export function pointersFor(urls: RevocationUrls, issuerId: number, partition: number | null): RevocationPointers {
  return {
    crlUrl: urls.crl(issuerId, partition ?? WHOLE_ISSUER),
    ocspUrl: urls.ocsp(),
    caIssuersUrl: urls.caIssuer(issuerId),
  };
}
