// Default import: pkcs11js is CommonJS and its constants are not visible as ESM named exports.
import pkcs11 from "pkcs11js";
import { Rejection } from "../errors.ts";

/**
 * What src/hsm throws. Every error here carries hsm-ca's own words or a
 * PKCS#11 return code's name: never a PIN, never key material.
 */

/**
 * The HSM cannot be used now (gone, being reconnected, cannot be loaded or
 * logged into). A Rejection of kind hsm-unavailable, so every door answers
 * it the same way (each edge maps the kind to its own status).
 */
export class HsmUnavailableError extends Rejection {
  constructor(detail: string, options: { cause?: unknown } = {}, kind: "hsm-unavailable" | "hsm-busy" = "hsm-unavailable") {
    super(kind, detail, { retryAfterSeconds: kind === "hsm-busy" ? 1 : 5 });
    if (options.cause !== undefined) this.cause = options.cause;
  }
}

/**
 * Every session of the pool is lent and the queue in front of it is full:
 * refused at once instead of queueing without bound: kind hsm-busy, with a
 * retry hint of 1 s.
 */
export class HsmBusyError extends HsmUnavailableError {
  constructor(detail: string) {
    super(detail, {}, "hsm-busy");
  }
}

/** The pool was retired (the HSM went away, or it is closing): its sessions are no longer lent. */
export class PoolRetiredError extends HsmUnavailableError {}

/** The token refused the login; code is the PKCS#11 return code when there is one. */
export class LoginError extends HsmUnavailableError {
  constructor(
    message: string,
    readonly code: number | undefined,
  ) {
    super(message);
  }
}

/** A key is missing, ambiguous (two objects share a label), or already there. */
export class HsmKeyError extends Error {}

/**
 * No key with this label on the token. On a module that reads its object
 * store only at C_Initialize (tpm2-pkcs11), a key made by another process
 * is not found until the module is re-initialised: the HSM layer does that
 * once and looks again before it throws this.
 */
export class KeyNotFoundError extends HsmKeyError {}

/** The sealed value cannot be opened here, or the secret key is not (uniquely) on the token. */
export class SecretKeyError extends Error {}

/** The PIN cannot be read from where the configuration says it is. Names the source, never the PIN. */
export class PinError extends Error {}

/** A signature this HSM's signing provider does not make (algorithm, hash or key it does not know). */
export class UnsupportedSignatureError extends Error {}

/** The PKCS#11 return code's name only: never anything that could carry a secret. */
export function pkcs11Reason(err: unknown): string {
  if (err instanceof pkcs11.Pkcs11Error) {
    const name = Object.entries(pkcs11).find(([k, v]) => k.startsWith("CKR_") && v === err.code)?.[0];
    return name ?? `PKCS#11 error 0x${err.code.toString(16)}`;
  }
  return err instanceof Error ? err.message : String(err);
}

/** For events and states: a PKCS#11 code name, hsm-ca's own message, or an error class name; nothing secret. */
export function failureReason(err: unknown): string {
  if (err instanceof pkcs11.Pkcs11Error) return pkcs11Reason(err);
  if (err instanceof HsmUnavailableError || err instanceof HsmKeyError || err instanceof SecretKeyError || err instanceof PinError) return err.message;
  return err instanceof Error ? err.constructor.name : "error";
}
