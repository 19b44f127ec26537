import crypto from "node:crypto";
import type { AcmeIdentifier } from "../problem.ts";
import { OK, ValidationFailure, checkIdentifier, deadlineSignal, failureResult, printable } from "./common.ts";
import { dnsFailure, makeResolver } from "./resolve.ts";
import type { ValidationConfig, ValidationResult } from "./types.ts";

/**
 * dns-01 (RFC 8555 §8.4): a TXT record at _acme-challenge.<domain> holding
 * base64url(SHA-256(keyAuthorization)). For a wildcard identifier the caller
 * passes the base domain (RFC 8555 §7.1.3); "*" itself is refused here.
 */
export async function validateDns01(
  id: AcmeIdentifier,
  keyAuthorization: string,
  cfg: ValidationConfig,
  signal?: AbortSignal,
): Promise<ValidationResult> {
  const abort = deadlineSignal(cfg, signal);
  try {
    if (id.type !== "dns") {
      throw new ValidationFailure("malformed", "dns-01 cannot validate an IP identifier (RFC 8738 §7)");
    }
    const name = `_acme-challenge.${checkIdentifier(id)}`;
    const expected = crypto.createHash("sha256").update(keyAuthorization).digest("base64url");

    const resolver = makeResolver(cfg, abort); // outside the try: a bad resolver list is our bug, not "dns"
    let records: string[][];
    try {
      records = await resolver.resolveTxt(name);
    } catch (err) {
      throw dnsFailure(err, "TXT", name);
    }
    // A TXT record may be split into several <=255-byte strings; they form one value.
    const values = records.map((chunks) => chunks.join(""));
    if (values.length === 0) throw new ValidationFailure("dns", `No TXT records found for ${name}`);
    if (values.includes(expected)) return OK;

    const shown = values.slice(0, 3).map((v) => printable(v)).join(", ");
    const more = values.length > 3 ? ` and ${values.length - 3} more` : "";
    throw new ValidationFailure("incorrectResponse", `Incorrect TXT record ${shown}${more} found at ${name}`);
  } catch (err) {
    return failureResult(err);
  }
}
