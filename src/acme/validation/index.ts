import type { AcmeIdentifier } from "../problem.ts";
import { validateDns01 } from "./dns-01.ts";
import { validateHttp01 } from "./http-01.ts";
import { validateTlsAlpn01 } from "./tls-alpn-01.ts";
import type { ValidationConfig, ValidationResult } from "./types.ts";

export type { ValidationConfig, ValidationResult } from "./types.ts";
export type ChallengeType = "http-01" | "dns-01" | "tls-alpn-01";

/** After the deadline, how long a validator gets to report its own, more specific, timeout. */
const GRACE_MS = 100;

/**
 * Runs one challenge validation. Never throws and always settles by
 * cfg.timeoutMs (plus a short grace): at the deadline the validators are
 * aborted, which closes their sockets and cancels DNS queries.
 */
export async function validateChallenge(
  type: ChallengeType,
  id: AcmeIdentifier,
  token: string,
  keyAuthorization: string,
  cfg: ValidationConfig,
): Promise<ValidationResult> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const backstop = new Promise<ValidationResult>((resolve) => {
    timer = setTimeout(() => {
      controller.abort();
      // Should a validator ignore the abort, the result is still on time.
      timer = setTimeout(
        () =>
          resolve({
            ok: false,
            error: { type: type === "dns-01" ? "dns" : "connection", detail: `${type} validation timed out after ${cfg.timeoutMs} ms` },
          }),
        GRACE_MS,
      );
    }, cfg.timeoutMs);
  });
  try {
    return await Promise.race([run(type, id, token, keyAuthorization, cfg, controller.signal), backstop]);
  } catch (err) {
    return { ok: false, error: { type: "serverInternal", detail: `${type} validation failed unexpectedly: ${(err as Error)?.message ?? String(err)}` } };
  } finally {
    clearTimeout(timer);
    controller.abort(); // release anything a validator still holds
  }
}

function run(
  type: ChallengeType,
  id: AcmeIdentifier,
  token: string,
  keyAuthorization: string,
  cfg: ValidationConfig,
  signal: AbortSignal,
): Promise<ValidationResult> {
  switch (type) {
    case "http-01":
      return validateHttp01(id, token, keyAuthorization, cfg, signal);
    case "dns-01":
      return validateDns01(id, keyAuthorization, cfg, signal);
    case "tls-alpn-01":
      return validateTlsAlpn01(id, keyAuthorization, cfg, signal);
    default:
      return Promise.resolve({ ok: false, error: { type: "malformed", detail: `Unsupported challenge type ${String(type)}` } });
  }
}
