import { describe } from "vitest";
import { issuanceSuite } from "./issuance-suite.ts";

describe("REST issuance on the embedded PGlite database", () => issuanceSuite("pglite"));
