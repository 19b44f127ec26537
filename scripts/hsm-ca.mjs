#!/usr/bin/env node
// The hsm-ca command. Runs the TypeScript sources through tsx: no build step.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/cli/main.ts");
process.exit(await main(process.argv.slice(2)));
