// @peculiar/x509 needs the Reflect metadata polyfill before it loads.
import "reflect-metadata";
import { runFromTerminal } from "./cli/terminal.ts";
import { oneLine } from "./cli/run-command.ts";
import { loadConfig, type Config } from "./config.ts";
import { setLintEnabled } from "./lint/gate.ts";
import { serve } from "./serve.ts";

/**
 * The hsm-ca executable (scripts/hsm-ca.mjs), its one entry: `serve` runs the
 * service (and, with HSM_CA_WORKERS above 1, node:cluster starts each
 * worker through here again); every other word is a CLI command. This is
 * where the service and the CLI meet: the service knows no CLI.
 */
async function main(argv: string[]): Promise<number> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    process.stderr.write(`hsm-ca: ${oneLine(err)}\n`);
    return 2;
  }
  // The CLI signs too (ceremonies, CRLs with DATABASE_URL): the gate's setting holds for the whole process.
  setLintEnabled(config.lint.enabled);
  return argv[0] === "serve" ? serve(config) : runFromTerminal(argv, config);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`hsm-ca: ${oneLine(err)}\n`);
    process.exit(1);
  },
);
