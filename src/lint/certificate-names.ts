import type { CertificateLintInput } from "./certificate-expectations.ts";
import type { Violation } from "./lint-failure.ts";
import { checkNameConstraints } from "./name-constraints.ts";
import { looksLikeHostName, sanProblem, type NameText } from "./names.ts";

/**
 * The names in a certificate: the subject (no empty values; the template's
 * attributes in its order), the SANs (RFC 5280 §4.2.1.6: present and
 * critical when the subject is empty; none empty or repeated; DNS names
 * IDNA-valid; only the types and domains the profile issues; the
 * template's), a host-name CN among the SANs, and every name within the
 * name constraints of the CAs above.
 */

const ATTRIBUTE_NAMES: Record<string, string> = {
  "2.5.4.3": "CN",
  "2.5.4.6": "C",
  "2.5.4.7": "L",
  "2.5.4.8": "ST",
  "2.5.4.10": "O",
  "2.5.4.11": "OU",
};

/** `subject`: its attributes in DN order; `san`: the subjectAltName's names, undefined without one. */
export function checkCertificateNames(input: CertificateLintInput, subject: Array<{ type: string; value: string }>, san: NameText[] | undefined, sanCritical: boolean, out: Violation[]): void {
  const attributes: Array<[string, string]> = [];
  for (const atv of subject) {
    const name = ATTRIBUTE_NAMES[atv.type] ?? atv.type;
    if (atv.value.length === 0) out.push({ rule: "subject-empty-value", detail: `subject attribute ${name} is empty` });
    attributes.push([name, atv.value]);
  }
  const wantedSubject = input.template?.subject;
  if (wantedSubject && attributes.map(([k, v]) => `${k}=${v}`).join("\n") !== wantedSubject.map(([k, v]) => `${k}=${v}`).join("\n")) {
    out.push({ rule: "template-subject", detail: `subject ${show(attributes)} is not the template's ${show(wantedSubject)}` });
  }

  const names: NameText[] = san ?? [];
  if (san && names.length === 0) out.push({ rule: "san-empty", detail: "a subjectAltName extension with no names" });
  if (subject.length === 0) {
    if (names.length === 0) out.push({ rule: "san-required", detail: "no subject and no subjectAltName" });
    else if (!sanCritical) out.push({ rule: "san-critical", detail: "the subject is empty and the subjectAltName is not critical (RFC 5280 §4.2.1.6)" });
  }
  const seen = new Set<string>();
  for (const n of names) {
    const key = `${n.type}:${n.value.toLowerCase()}`;
    if (seen.has(key)) out.push({ rule: "san-duplicate", detail: `${n.type} name ${JSON.stringify(n.value)} appears twice` });
    seen.add(key);
    const problem = sanProblem(n);
    if (problem) out.push(problem);
  }

  const profile = input.profile;
  if (profile) {
    if (profile.sanRequired && names.length === 0) out.push({ rule: "san-required", detail: `profile ${profile.name} requires a subjectAltName` });
    for (const n of names) {
      if (!profile.sanTypes.includes(n.type)) out.push({ rule: "san-profile", detail: `a ${n.type} SAN (${JSON.stringify(n.value)}), which profile ${profile.name} never issues` });
      else if (n.type === "dns" && profile.dnsSuffixes && !profile.dnsSuffixes.some((s) => suffixMatch(n.value, s))) {
        out.push({ rule: "san-profile", detail: `DNS name ${JSON.stringify(n.value)} is outside profile ${profile.name}'s domains` });
      }
    }
    if (profile.commonNameFromSans) {
      for (const [attr, cn] of attributes) {
        if (attr === "CN" && !names.some((n) => (n.type === "dns" || n.type === "ip") && n.value.toLowerCase() === cn.toLowerCase())) {
          out.push({ rule: "cn-among-sans", detail: `CN ${JSON.stringify(cn)} is not one of the DNS or IP SANs` });
        }
      }
    }
  }

  const wantedSans = input.template?.sans;
  if (wantedSans && names.map((n) => `${n.type}:${n.value}`).join(",") !== wantedSans.map((n) => `${n.type}:${n.value}`).join(",")) {
    out.push({ rule: "template-sans", detail: `SANs ${names.map((n) => `${n.type}:${n.value}`).join(", ") || "(none)"} are not the template's` });
  }

  const chain = [...(input.issuer ? [input.issuer] : []), ...(input.above ?? [])];
  if (chain.length) {
    // A CN that is a host name is checked as a DNS name too: relying parties that still read it would.
    const hostCns = attributes.filter(([a, v]) => a === "CN" && looksLikeHostName(v) && !names.some((n) => n.value.toLowerCase() === v.toLowerCase()));
    checkNameConstraints([...names, ...hostCns.filter(([, v]) => /[a-z]/i.test(v) && v.includes(".")).map(([, v]) => ({ type: "dns", value: v }))], chain, out);
  }
}

function suffixMatch(name: string, suffix: string): boolean {
  const n = name.toLowerCase().replace(/^\*\./, "");
  const s = suffix.toLowerCase();
  return n === s || n.endsWith("." + s);
}

function show(attributes: Array<[string, string]>): string {
  return attributes.length ? attributes.map(([k, v]) => `${k}=${v}`).join(", ") : "(empty)";
}
