#!/usr/bin/env node
// The cert-manager external issuer controller for hsm-ca (docs/cert-manager.md).
// Runs the TypeScript sources through tsx, like scripts/hsm-ca.mjs.
import { register } from "tsx/esm/api";

register();
await import("../src/cert-manager/main.ts");
