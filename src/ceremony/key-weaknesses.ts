import type { KeyProvenance } from "../hsm/key-manager.ts";

/**
 * What makes a CA key weaker than one hsm-ca generates itself (private,
 * sensitive, never extractable, always sensitive), from the attributes the
 * token reports. An adopted key with any of these is refused unless the
 * operator says --allow-weak-key, and then the list is recorded. CKA_LOCAL
 * alone is not here: it is reported, and a key imported or unwrapped also
 * lost CKA_ALWAYS_SENSITIVE or CKA_NEVER_EXTRACTABLE, which are.
 */
export function keyWeaknesses(p: KeyProvenance): string[] {
  const weak: string[] = [];
  if (!p.private) weak.push("not private (CKA_PRIVATE=false: visible without logging in)");
  if (!p.sensitive) weak.push("not sensitive (CKA_SENSITIVE=false: its value can be read)");
  else if (!p.alwaysSensitive) weak.push("not always sensitive (CKA_ALWAYS_SENSITIVE=false: its value was readable once, e.g. imported)");
  if (p.extractable) weak.push("extractable (CKA_EXTRACTABLE=true: it can be wrapped off the token)");
  else if (!p.neverExtractable) weak.push("was extractable once (CKA_NEVER_EXTRACTABLE=false)");
  return weak;
}
