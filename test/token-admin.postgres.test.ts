import { describe } from "vitest";
import { tokenAdminSuite } from "./token-admin-suite.ts";

describe("API token list and revoke on PostgreSQL (the CLI as its own process)", () => tokenAdminSuite("postgres"));
