import fs from "node:fs";
import { chromium, type Browser } from "playwright-core";

/** Debian's Chromium (scripts/ensure-deps.sh installs it for the tests). */
export const CHROMIUM = "/usr/bin/chromium";

/**
 * Headless Chromium as a person's browser. Missing Chromium fails the test
 * that needs it, loudly: a browser test that skips itself proves nothing.
 */
export async function launchChromium(): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium, or run ./scripts/test as root)`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}
