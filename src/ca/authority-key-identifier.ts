import * as x509 from "@peculiar/x509";

/** The authorityKeyIdentifier of a certificate `issuer` signs: the issuer's own subjectKeyIdentifier. */
export function authorityKeyIdentifier(issuer: x509.X509Certificate): x509.AuthorityKeyIdentifierExtension {
  const ski = issuer.getExtension(x509.SubjectKeyIdentifierExtension);
  if (!ski) throw new Error(`issuer ${issuer.subject} has no subjectKeyIdentifier`);
  return new x509.AuthorityKeyIdentifierExtension(ski.keyId, false);
}
