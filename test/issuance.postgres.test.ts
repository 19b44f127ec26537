import { describe } from "vitest";
import { issuanceSuite } from "./issuance-suite.ts";

describe("REST issuance on PostgreSQL", () => issuanceSuite("postgres"));
