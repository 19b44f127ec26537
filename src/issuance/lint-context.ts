import * as x509 from "@peculiar/x509";
import type { LintContext, ProfileNameRules } from "../lint/certificate-expectations.ts";
import type { Profile } from "../policy/profile-schema.ts";
import type { ActiveIssuer } from "./issuer.ts";

/**
 * What the lint gate needs to hold a certificate from this profile and
 * issuer to: the CAs above the issuer (their name constraints bind the new
 * certificate) and the names the profile can produce. Made once per issuer
 * and profile object: issuance is the hot path.
 */
export function lintContextFor(issuer: ActiveIssuer, profile: Profile): LintContext {
  let byProfile = contexts.get(issuer);
  if (!byProfile) contexts.set(issuer, (byProfile = new WeakMap()));
  let ctx = byProfile.get(profile);
  if (!ctx) byProfile.set(profile, (ctx = { above: aboveOf(issuer), profile: nameRulesOf(profile) }));
  return ctx;
}

const contexts = new WeakMap<ActiveIssuer, WeakMap<Profile, LintContext>>();

/** The certificates between the issuer and the root, then the root: the chain without the issuer itself. */
function aboveOf(issuer: ActiveIssuer): x509.X509Certificate[] {
  const chain = [...x509.PemConverter.decode(issuer.chainPem), ...x509.PemConverter.decode(issuer.rootPem)].map((der) => new x509.X509Certificate(der));
  const own = Buffer.from(issuer.certificate.rawData);
  return chain.filter((c) => !Buffer.from(c.rawData).equals(own));
}

export function nameRulesOf(profile: Profile): ProfileNameRules {
  const s = profile.sans;
  return {
    name: profile.name,
    sanRequired: s.required,
    sanTypes: [...(s.dns ? ["dns"] : []), ...(s.ip ? ["ip"] : []), ...(s.uri ? ["url"] : []), ...(s.email ? ["email"] : [])],
    dnsSuffixes: s.dns?.suffixes,
    commonNameFromSans: profile.subject.commonName === "first-san",
  };
}
