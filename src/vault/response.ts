import crypto from "node:crypto";
import type { Context } from "hono";

/**
 * Vault's response envelope: what hvac, node-vault and Go's vault/api
 * (api.Secret) decode. Certificates are not leases here, as in Vault's PKI
 * engine: lease_id empty, lease_duration 0, not renewable.
 */
export function secretResponse(c: Context, data: Record<string, unknown> | null, warnings: string[] = [], auth: Record<string, unknown> | null = null) {
  return {
    request_id: (c.get("requestId") as string | undefined) ?? crypto.randomUUID(),
    lease_id: "",
    renewable: false,
    lease_duration: 0,
    data,
    wrap_info: null,
    warnings: warnings.length ? warnings : null,
    auth,
  };
}
