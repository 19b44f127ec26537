import * as x509 from "@peculiar/x509";

/** Where relying parties check a certificate: CRL Distribution Point and Authority Information Access. */
export interface RevocationPointers {
  crlUrl: string;
  ocspUrl: string;
  caIssuersUrl: string;
}

/** The CRL Distribution Points and Authority Information Access extensions for `r`. */
export function revocationExtensions(r: RevocationPointers): x509.Extension[] {
  return [
    new x509.CRLDistributionPointsExtension([r.crlUrl]),
    new x509.AuthorityInfoAccessExtension({ ocsp: [r.ocspUrl], caIssuers: [r.caIssuersUrl] }),
  ];
}
