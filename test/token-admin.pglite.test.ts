import { describe } from "vitest";
import { tokenAdminSuite } from "./token-admin-suite.ts";

describe("API token list and revoke on PGlite (the CLI over the control socket)", () => tokenAdminSuite("pglite"));
