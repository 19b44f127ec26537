import type { CaRow } from "../store/cas.ts";

/**
 * The rotation rule: an intermediate is due for rotation once less than
 * `remaining` of its life is left (a share of its lifetime, or a duration).
 * Pure: the scheduler, the CLI's status, metrics and the dashboard all ask it.
 */
export function rotationDueAt(ca: Pick<CaRow, "notBefore" | "notAfter">, remaining: { share: number } | { ms: number }): Date {
  const life = ca.notAfter.getTime() - ca.notBefore.getTime();
  const left = "share" in remaining ? life * remaining.share : remaining.ms;
  return new Date(ca.notAfter.getTime() - left);
}
