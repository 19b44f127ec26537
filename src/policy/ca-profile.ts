import type * as x509 from "@peculiar/x509";
import { Rejection } from "../errors.ts";
import type { CaProfile, NameSubtrees } from "./profile-schema.ts";

/**
 * What a CA profile decides beyond what every profile decides (subject,
 * names, lifetime): the sub-CA's path length, key usages and name
 * constraints, and whether the CA that would sign it may sign a CA at all.
 */
export interface CaDecision {
  /** basicConstraints pathLenConstraint: how many CA levels may follow the sub-CA. */
  pathLength: number;
  /** Critical nameConstraints; absent: the profile sets none. */
  nameConstraints?: { permitted: NameSubtrees; excluded: NameSubtrees };
}

/**
 * The pathLenConstraints of the CAs above a new certificate: the active
 * intermediate that signs it and the root above that (null: no limit set).
 */
export interface IssuerPathLengths {
  intermediate: number | null;
  root: number | null;
}

/** keyCertSign and cRLSign always; what the profile adds (digitalSignature) after them. */
export function caKeyUsages(profile: CaProfile): Array<keyof typeof x509.KeyUsageFlags> {
  return ["keyCertSign", "cRLSign", ...profile.ca.keyUsage];
}

export function caDecision(profile: CaProfile): CaDecision {
  const nc = profile.ca.nameConstraints;
  const copy = (s: NameSubtrees): NameSubtrees => ({ dns: [...s.dns], uri: [...s.uri], ip: [...s.ip] });
  return {
    pathLength: profile.ca.pathLength,
    ...(nc && hasAny(nc.permitted) + hasAny(nc.excluded) > 0 ? { nameConstraints: { permitted: copy(nc.permitted), excluded: copy(nc.excluded) } } : {}),
  };
}

/**
 * RFC 5280 §4.2.1.9: a CA may sign a CA only when its own pathLen leaves
 * room for one more level, so a sub-CA of pathLen p needs an issuing
 * intermediate of pathLen p+1 or more. Relying parties (OpenSSL, Go) also
 * hold the root's pathLen to the whole chain. Refused with what to do:
 * rotate with a larger HSM_CA_INTERMEDIATE_PATH_LENGTH, or, when the root
 * itself leaves no room, a new root.
 */
export function checkIssuerPathLength(profile: CaProfile, above: IssuerPathLengths): void {
  const needed = profile.ca.pathLength + 1;
  const { intermediate, root } = above;
  if (intermediate === null || intermediate >= needed) return;
  const what =
    `the active intermediate has pathLen ${intermediate}, so it ${intermediate === 0 ? "signs end-entity certificates only" : `may sign CAs of pathLen ${intermediate - 1} at most`}; ` +
    `profile ${profile.name} issues CAs of pathLen ${profile.ca.pathLength}, which needs an intermediate of pathLen ${needed}`;
  // The root limits the intermediates below it to one less than its own pathLen.
  if (root === null || root - 1 >= needed) {
    throw new Rejection(
      "issuer-path-length",
      `${what}: set HSM_CA_INTERMEDIATE_PATH_LENGTH=${needed} (or more) and rotate the intermediate (hsm-ca rotate); the next intermediate will allow it`,
    );
  }
  throw new Rejection(
    "issuer-path-length",
    `${what}, and the root's pathLen ${root} allows intermediates of pathLen ${Math.max(0, root - 1)} at most: a rotation cannot help, a new root made with HSM_CA_INTERMEDIATE_PATH_LENGTH=${needed} is needed (see docs/mesh-intermediates.md)`,
  );
}

function hasAny(s: NameSubtrees): number {
  return s.dns.length + s.uri.length + s.ip.length;
}
