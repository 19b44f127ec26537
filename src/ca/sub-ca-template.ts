import type { LeafTemplate } from "./leaf-template.ts";

/** Names of each type one side of a name constraint covers. */
export interface NameSubtreesTemplate {
  /** DNS suffixes: the name and every name under it. */
  dns: string[];
  /** URI hosts ("example.org") or domains (".example.org"). */
  uri: string[];
  /** Address ranges, CIDR ("10.0.0.0/8", "fd00::/8"). */
  ip: string[];
}

/**
 * What a CA certificate signed for a sub-CA says, as policy decided it:
 * everything a leaf's template says (its extendedKeyUsage is empty), plus
 * the path length and name constraints. src/policy's Decision for a CA
 * profile is one.
 */
export interface SubCaTemplate extends LeafTemplate {
  ca: {
    pathLength: number;
    nameConstraints?: { permitted: NameSubtreesTemplate; excluded: NameSubtreesTemplate };
  };
}
