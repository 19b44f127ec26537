import { afterAll, beforeAll, describe } from "vitest";
import { auditAnchorSuite } from "./audit-anchor-suite.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

let t: TestService;
const logLines: string[] = [];
beforeAll(async () => {
  t = await startTestService("pglite", {}, (line) => void logLines.push(line));
});
afterAll(async () => {
  await t?.stop();
});

describe("the HSM audit anchor (PGlite: the CLI reaches the service over its control socket)", () => auditAnchorSuite("pglite", () => ({ service: t, logLines })));
