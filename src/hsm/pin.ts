import fs from "node:fs";
import { PinError } from "./errors.ts";
import type { HsmConfig } from "./hsm-config.ts";

/**
 * Reads the token PIN from where the config says it is. Errors name the
 * source (variable or file), never the PIN.
 */
export function readPin(source: HsmConfig["pinSource"]): string {
  if ("env" in source) {
    const pin = process.env[source.env];
    if (!pin) throw new PinError(`the HSM PIN variable ${source.env} is empty`);
    return pin;
  }
  let text: string;
  try {
    text = fs.readFileSync(source.file, "utf8");
  } catch (err) {
    throw new PinError(`cannot read the HSM PIN file ${source.file}: ${(err as NodeJS.ErrnoException).code ?? "error"}`);
  }
  const pin = text.trim();
  if (!pin) throw new PinError(`the HSM PIN file ${source.file} is empty`);
  return pin;
}
