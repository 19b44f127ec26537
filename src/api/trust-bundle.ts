import crypto from "node:crypto";
import type { CaRow } from "../store/cas.ts";

/**
 * The roots a relying party should trust now, as PEM and as a SPIFFE bundle
 * (SPIFFE Trust Domain and Bundle §4, X.509-SVID §6.1): every root that is
 * neither revoked nor expired, a retired one included while certificates
 * chaining to it may still be live, a new one as soon as it exists.
 */

/** How often bundle consumers should fetch again (seconds); also the HTTP cache lifetime. */
export const BUNDLE_REFRESH_SECONDS = 300;

export interface SpiffeBundle {
  keys: Array<Record<string, unknown>>;
  spiffe_sequence: number;
  spiffe_refresh_hint: number;
}

export function trustedRoots(cas: readonly CaRow[], now: Date): CaRow[] {
  return cas.filter((ca) => ca.role === "root" && ca.status !== "revoked" && ca.notAfter > now);
}

export function bundlePem(roots: readonly CaRow[]): string {
  return roots.map((r) => r.certificatePem.trim() + "\n").join("");
}

/**
 * One JWK per root: kty and the public key, use "x509-svid", x5c with
 * exactly that one DER certificate, and no kid (X.509-SVID §6.1).
 *
 * spiffe_sequence must grow whenever the key set changes. The set changes
 * only when a root is created, revoked or expires, so the time of the latest
 * such event (Unix seconds) is the sequence: it moves with every change and
 * never goes back, and every replica computes the same number.
 */
export function spiffeBundle(cas: readonly CaRow[], now: Date): SpiffeBundle {
  const roots = trustedRoots(cas, now);
  const changes = cas
    .filter((ca) => ca.role === "root")
    .flatMap((ca) => [ca.createdAt, ...(ca.revokedAt ? [ca.revokedAt] : []), ...(ca.notAfter <= now ? [ca.notAfter] : [])])
    .filter((d) => d <= now)
    .map((d) => Math.floor(d.getTime() / 1000));
  return {
    keys: roots.map((root) => {
      const cert = new crypto.X509Certificate(root.certificatePem);
      const { kty, ...publicKey } = cert.publicKey.export({ format: "jwk" });
      return { kty, use: "x509-svid", ...publicKey, x5c: [cert.raw.toString("base64")] };
    }),
    spiffe_sequence: Math.max(0, ...changes),
    spiffe_refresh_hint: BUNDLE_REFRESH_SECONDS,
  };
}
