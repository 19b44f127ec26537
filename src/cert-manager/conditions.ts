import type { Condition, ConditionStatus } from "./resources.ts";

/** Condition lists as Kubernetes API conventions keep them: one entry per type. */

export function findCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

export function hasCondition(conditions: readonly Condition[] | undefined, type: string, status: ConditionStatus, reason?: string): boolean {
  const c = findCondition(conditions, type);
  return c !== undefined && c.status === status && (reason === undefined || c.reason === reason);
}

/**
 * The list with `next` in place of the condition of its type. Every other
 * condition is kept as it is: the whole list goes back in a merge patch, and
 * cert-manager's webhook refuses changes to Approved and Denied.
 * lastTransitionTime moves only when the status changes.
 */
export function withCondition(conditions: readonly Condition[] | undefined, next: Omit<Condition, "lastTransitionTime">, now: Date): Condition[] {
  const list = [...(conditions ?? [])];
  const at = list.findIndex((c) => c.type === next.type);
  const previous = at >= 0 ? list[at] : undefined;
  const lastTransitionTime = previous && previous.status === next.status && previous.lastTransitionTime ? previous.lastTransitionTime : kubeTime(now);
  const merged: Condition = { ...next, lastTransitionTime };
  if (at >= 0) list[at] = merged;
  else list.push(merged);
  return list;
}

/** RFC 3339 in whole seconds, as metav1.Time serialises. */
export function kubeTime(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}
