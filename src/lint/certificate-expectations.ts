import type * as x509 from "@peculiar/x509";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";

/** The certificate kinds hsm-ca signs, each with its own extension rules. */
export type CertificateRole = "leaf" | "sub-ca" | "root" | "intermediate" | "ocsp-responder";

/**
 * What the gate holds a certificate to, beyond RFC 5280: what its template
 * said, and for certificates from a profile, the names that profile can
 * produce. Everything here is plain data: the gate knows no profiles.
 */
export interface CertificateLintInput {
  role: CertificateRole;
  /** The DER TBSCertificate about to be signed. */
  tbs: Uint8Array;
  /** The serial as the builder was given it (hex), for the audit log. */
  serial?: string;
  /** The signing key's algorithm. */
  algorithm: CaKeyAlgorithm;
  /** The issuing CA's certificate; absent for a self-signed root. */
  issuer?: x509.X509Certificate;
  /** CA certificates above the issuer, nearest first, up to the root: their name constraints bind too. */
  above?: x509.X509Certificate[];
  /** What the template said: the decoded certificate must say exactly this. */
  template?: CertificateTemplate;
  /** The profile's limits on names; absent: only RFC 5280's. */
  profile?: ProfileNameRules;
}

export interface CertificateTemplate {
  /** (attribute, value) pairs in DN order, short names (CN, O, ...). */
  subject?: Array<[string, string]>;
  sans?: Array<{ type: string; value: string }>;
  keyUsage?: string[];
  /** Dotted OIDs. */
  extendedKeyUsage?: string[];
  notBefore: Date;
  notAfter: Date;
  /** CA certificates: the pathLenConstraint. */
  pathLength?: number;
}

/** What a certificate profile lets into the names; the gate checks names against it. */
export interface ProfileNameRules {
  name: string;
  /** At least one SAN. */
  sanRequired: boolean;
  /** The SAN types the profile issues ("dns", "ip", "email", "url"). */
  sanTypes: string[];
  /** DNS SANs must equal or end in "." + one of these. */
  dnsSuffixes?: string[];
  /** The profile makes the CN from the first DNS name or IP: it must then be one of the SANs. */
  commonNameFromSans: boolean;
}

/** What a certificate builder is handed for the gate besides its template. */
export type LintContext = Pick<CertificateLintInput, "above" | "profile">;
