import type { CaRow } from "../store/cas.ts";
import type { CrossCertificateRow } from "../store/cross-certificates.ts";

/** The certificates a relying party needs between a leaf and one trust anchor. */
export interface Chain {
  /** The root this chain ends at (its topmost certificate's issuer). */
  rootId: number;
  rootSubject: string;
  /** The certificates above the leaf, leaf side first, PEM. */
  chainPem: string;
}

export interface IssuerChains {
  /** To the active root where there is a way there: what REST, /ca/chain.pem and ACME answer by default. */
  default: Chain;
  /** One to each other trusted root (a root rollover's other root), in root order. */
  alternates: Chain[];
}

/**
 * Every way from a leaf of `issuerId` up to a trusted root. An intermediate
 * has its own certificate (signed by its parent) and, after a root
 * rollover, one re-signed under the other root; a root may have a
 * certificate cross-signed by another root. So a leaf's issuer reaches
 * root R directly ([intermediate under R]) or through a cross certificate
 * ([intermediate under R', R' cross-signed by R]). For each root the
 * shortest way counts; the one to the active root is the default.
 * Revoked or expired certificates and roots are no way at all.
 */
export function chainsOf(issuerId: number, cas: readonly CaRow[], crossCertificates: readonly CrossCertificateRow[], now: Date): IssuerChains | undefined {
  const issuer = cas.find((c) => c.id === issuerId);
  if (!issuer) return undefined;
  const byId = new Map(cas.map((c) => [c.id, c]));
  const trustedRoot = (id: number | null) => {
    const r = id === null ? undefined : byId.get(id);
    return r && r.role === "root" && r.status !== "revoked" && r.notAfter > now ? r : undefined;
  };
  const live = crossCertificates.filter((x) => !x.revokedAt && x.notAfter > now && x.notBefore <= now);
  const versions = [
    { pem: issuer.certificatePem, signedBy: issuer.parentId },
    ...live.filter((x) => x.caId === issuer.id).map((x) => ({ pem: x.certificatePem, signedBy: x.issuerCaId as number | null })),
  ];
  const paths: Array<{ root: CaRow; pems: string[] }> = [];
  for (const v of versions) {
    const root = trustedRoot(v.signedBy);
    if (!root) continue;
    paths.push({ root, pems: [v.pem] });
    for (const x of live.filter((x) => x.caId === root.id)) {
      const above = trustedRoot(x.issuerCaId);
      if (above && above.id !== root.id) paths.push({ root: above, pems: [v.pem, x.certificatePem] });
    }
  }
  // Shortest first, then the issuer's own certificate before re-signed ones (a stable order for every replica).
  const best = new Map<number, { root: CaRow; pems: string[] }>();
  for (const p of [...paths].sort((a, b) => a.pems.length - b.pems.length)) if (!best.has(p.root.id)) best.set(p.root.id, p);
  const asChain = (p: { root: CaRow; pems: string[] }): Chain => ({ rootId: p.root.id, rootSubject: p.root.subject, chainPem: joinPem(p.pems) });
  const active = [...best.values()].find((p) => p.root.status === "active");
  const fallback = { rootId: issuer.parentId ?? issuer.id, rootSubject: byId.get(issuer.parentId ?? -1)?.subject ?? issuer.subject, chainPem: issuer.certificatePem };
  const first = active ?? best.get(issuer.parentId ?? -1) ?? [...best.values()][0];
  const chosen = first ? asChain(first) : fallback;
  const alternates = [...best.values()]
    .filter((p) => p.root.id !== chosen.rootId)
    .sort((a, b) => a.root.id - b.root.id)
    .map(asChain);
  return { default: chosen, alternates };
}

/** As chainPemOf (store/cas.ts) joins them: each trimmed, with one newline. */
function joinPem(pems: string[]): string {
  return pems.map((p) => p.trim() + "\n").join("");
}
