import type * as graphene from "graphene-pk11";
// Default import: pkcs11js is CommonJS and its constants are not visible as ESM named exports.
import pkcs11 from "pkcs11js";
import type { CaKeyAlgorithm } from "./key-algorithms.ts";

/**
 * What one token's PKCS#11 module can do, asked once when its sessions are
 * opened (C_GetMechanismList, C_GetTokenInfo): modules differ, and hsm-ca
 * adapts instead of failing on the first signature
 * (docs/hsm-compatibility.md):
 * - RSA signing: CKM_SHA*_RSA_PKCS where offered, else the DigestInfo
 *   signed with CKM_RSA_PKCS (opencryptoki 3.8 offers no SHA256-RSA-PKCS);
 * - key algorithms the token cannot make or sign with are named at start;
 * - a token's session limit caps the pool;
 * - C_WrapKey support decides what a backup can be;
 * - a module that reads its object store only at C_Initialize is
 *   re-initialised when a key the caller expects is not found.
 */
export interface TokenCapabilities {
  /** The library path and the token's manufacturer/model, for messages. */
  readonly module: string;
  readonly mechanisms: ReadonlySet<number>;
  /** The hashed RSA-PKCS mechanism per WebCrypto hash name, when the token has it. */
  readonly rsaHashed: Readonly<Record<string, number | undefined>>;
  /** Sessions the token allows at once (ulMaxSessionCount), when it states a limit. */
  readonly maxSessions?: number;
  /** Any wrapping mechanism offered (CKF_WRAP): keys could leave the token wrapped, if they were extractable. */
  readonly canWrap: boolean;
  /**
   * The module reads its object store once, at C_Initialize, and never sees
   * objects another process makes afterwards: tpm2-pkcs11 (its sqlite store;
   * measured with 1.9: new sessions, a new login or closing every session do
   * not help, C_Finalize + C_Initialize does, in ~30 ms). SoftHSM2 and
   * opencryptoki see another process's new keys on the next C_FindObjects.
   */
  readonly objectsReadAtInitialize: boolean;
}

/** C_GetInfo's manufacturerID of modules that read their object store only at C_Initialize. */
const READS_OBJECTS_AT_INITIALIZE = [/^tpm2-software\.github\.io/];

/** CK_EFFECTIVELY_INFINITE and CK_UNAVAILABLE_INFORMATION (as pkcs11js reads a CK_ULONG). */
const NO_LIMIT = new Set([0, 0xffffffff, Number.MAX_SAFE_INTEGER, 2 ** 64 - 1]);

export function tokenCapabilities(slot: graphene.Slot, module: string): TokenCapabilities {
  const mechanisms = new Set<number>();
  let canWrap = false;
  const list = slot.getMechanisms();
  for (let i = 0; i < list.length; i++) {
    const m = list.items(i);
    mechanisms.add(m.type);
    // CKF_WRAP = 0x20000
    if (m.flags & 0x20000) canWrap = true;
  }
  const token = slot.getToken();
  const limit = token.maxSessionCount;
  return {
    module,
    mechanisms,
    rsaHashed: {
      "SHA-256": mechanisms.has(pkcs11.CKM_SHA256_RSA_PKCS) ? pkcs11.CKM_SHA256_RSA_PKCS : undefined,
      "SHA-384": mechanisms.has(pkcs11.CKM_SHA384_RSA_PKCS) ? pkcs11.CKM_SHA384_RSA_PKCS : undefined,
      "SHA-512": mechanisms.has(pkcs11.CKM_SHA512_RSA_PKCS) ? pkcs11.CKM_SHA512_RSA_PKCS : undefined,
    },
    maxSessions: NO_LIMIT.has(limit) || limit > 1_000_000 ? undefined : limit,
    canWrap,
    objectsReadAtInitialize: READS_OBJECTS_AT_INITIALIZE.some((m) => m.test(slot.module.manufacturerID ?? "")),
  };
}

/**
 * Why the token cannot make or sign with keys of this algorithm, or
 * undefined when it can. Names the missing mechanisms as PKCS#11 calls them.
 */
export function unsupportedReason(caps: TokenCapabilities, algorithm: CaKeyAlgorithm): string | undefined {
  const needed: Array<[number, string]> = algorithm.startsWith("ecdsa-")
    ? [
        [pkcs11.CKM_EC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN"],
        [pkcs11.CKM_ECDSA, "CKM_ECDSA"],
      ]
    : [
        [pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, "CKM_RSA_PKCS_KEY_PAIR_GEN"],
        // Either the hashed mechanism or raw RSA-PKCS over a DigestInfo.
        ...(caps.rsaHashed["SHA-256"] ? [] : ([[pkcs11.CKM_RSA_PKCS, "CKM_RSA_PKCS (or CKM_SHA256_RSA_PKCS)"]] as Array<[number, string]>)),
      ];
  const missing = needed.filter(([m]) => !caps.mechanisms.has(m)).map(([, name]) => name);
  if (missing.length === 0) return undefined;
  return `the PKCS#11 module ${caps.module} does not offer ${missing.join(" and ")}, so it cannot make or sign with ${algorithm} keys`;
}

/** The algorithms of the list this token supports. */
export function supportedAlgorithms(caps: TokenCapabilities, algorithms: readonly CaKeyAlgorithm[]): CaKeyAlgorithm[] {
  return algorithms.filter((a) => unsupportedReason(caps, a) === undefined);
}

/**
 * The pool size to open: the configured one, capped by the token's session
 * limit (one session is the pool's lookup session, and one is left for
 * the CLI or an operator's tool on the same token).
 */
export function poolSizeFor(configured: number, caps: TokenCapabilities): number {
  if (caps.maxSessions === undefined) return configured;
  return Math.max(1, Math.min(configured, caps.maxSessions - 2));
}
