import type * as x509 from "@peculiar/x509";

/**
 * What a leaf certificate says, as policy decided it for one request: the
 * CA encodes it and signs, and looks nothing up (no profiles, no names
 * rules). src/policy's Decision is one.
 */
export interface LeafTemplate {
  /** Subject as (attribute, value) pairs in DN order; empty for no subject. */
  subject: Array<[string, string]>;
  sans: x509.JsonGeneralName[];
  sanCritical: boolean;
  keyUsage: Array<keyof typeof x509.KeyUsageFlags>;
  /** Dotted OIDs. */
  extendedKeyUsage: string[];
  notBefore: Date;
  notAfter: Date;
}
