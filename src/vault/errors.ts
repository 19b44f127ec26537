import type { Context } from "hono";
import { isUnavailable, type Rejection } from "../errors.ts";

/**
 * Vault's error form: `{"errors":["..."]}` with 400 (the request's fault),
 * 403 (no or a bad token, or a token that may not), 404 (no such path or
 * thing), 405 (the path exists, the method does not), 429 (a rate limit),
 * 500 and 503 (the server's fault, now). Vault clients (hvac, node-vault,
 * Go's vault/api, cert-manager) read these, not RFC 9457 problems.
 */
export class VaultError extends Error {
  constructor(
    readonly status: 400 | 403 | 404 | 405 | 429 | 500 | 503,
    message: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
  }
}

export function vaultErrorResponse(c: Context, err: VaultError): Response {
  if (err.retryAfterSeconds !== undefined) c.header("retry-after", String(err.retryAfterSeconds));
  return c.json({ errors: [err.message] }, err.status);
}

/**
 * A refusal from below (policy, issuance, revocation) as Vault says it: the
 * same words REST gives, Vault's status. Vault answers 403 "permission
 * denied" for a missing or unknown token, never 401.
 */
export function vaultErrorOf(err: Rejection): VaultError {
  if (isUnavailable(err.kind)) return new VaultError(503, err.detail, err.retryAfterSeconds);
  switch (err.kind) {
    case "unauthorized":
    case "forbidden":
      return new VaultError(403, err.detail);
    case "not-found":
      return new VaultError(404, err.detail);
    case "rate-limited":
      return new VaultError(429, err.detail, err.retryAfterSeconds);
    case "approval-required":
      // Vault has no "accepted, waits": REST's POST /api/v1/certificates queues such requests.
      return new VaultError(400, `${err.detail}; request it through the REST API (POST /api/v1/certificates), which queues it for approval`);
    default:
      return new VaultError(400, err.detail);
  }
}
