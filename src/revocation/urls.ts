/**
 * Where relying parties fetch revocation data, on the plain-HTTP listener:
 * the URLs written into certificates (CRL Distribution Points, Authority
 * Information Access) and served by the routes.
 */
export const WHOLE_ISSUER = -1;

export class RevocationUrls {
  constructor(readonly base: string) {}

  /** /crl/<issuer>.crl, /crl/<issuer>-p<k>.crl, and -delta before .crl for delta CRLs. */
  crl(issuerId: number, partition: number, kind: "full" | "delta" = "full"): string {
    return `${this.base}/crl/${crlName(issuerId, partition, kind)}`;
  }

  ocsp(): string {
    return `${this.base}/ocsp`;
  }

  caIssuer(issuerId: number): string {
    return `${this.base}/ca/${issuerId}.der`;
  }
}

export function crlName(issuerId: number, partition: number, kind: "full" | "delta"): string {
  return `${issuerId}${partition === WHOLE_ISSUER ? "" : `-p${partition}`}${kind === "delta" ? "-delta" : ""}.crl`;
}

export function parseCrlName(name: string): { issuerId: number; partition: number; kind: "full" | "delta" } | undefined {
  const m = /^([0-9]{1,9})(?:-p([0-9]{1,5}))?(-delta)?\.crl$/.exec(name);
  if (!m) return undefined;
  return { issuerId: Number(m[1]), partition: m[2] === undefined ? WHOLE_ISSUER : Number(m[2]), kind: m[3] ? "delta" : "full" };
}
