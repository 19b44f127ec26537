import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCliInProcess } from "./helpers/cli.ts";
import { makeCsr } from "./helpers/openssl.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

/**
 * No secret in any log line or CLI output: a whole run at debug level is
 * captured and searched for the token PINs and every API token made.
 */
const lines: string[] = [];
const cliOutput: string[] = [];
let t: TestService;
const tokens: string[] = [];

beforeAll(async () => {
  t = await startTestService("pglite", {}, (line) => lines.push(line));
});
afterAll(async () => {
  await t?.stop();
});

describe("secrets stay out of logs and output", () => {
  it("runs a day's work: tokens, issuance, a bad token, revocation, CLI commands", async () => {
    for (const role of ["admin", "auditor"]) {
      const r = await runCliInProcess(["token", "create", "--role", role], t.env);
      cliOutput.push(r.stderr);
      tokens.push(r.stdout.trim());
    }
    const issuer = await t.token("issuer", "tls-server");
    tokens.push(issuer);
    const issued = await t.api("POST", "/api/v1/certificates", { token: issuer, json: { csr: makeCsr({ san: "DNS:s.example.test" }).csr, profile: "tls-server" } });
    expect(issued.status).toBe(201);
    // A wrong token that looks real, and a real token one character off.
    expect((await t.api("GET", "/api/v1/cas", { token: "hsmca_0123456789ab_" + "s".repeat(32) })).status).toBe(401);
    expect((await t.api("GET", "/api/v1/cas", { token: tokens[0]!.slice(0, -1) + (tokens[0]!.endsWith("x") ? "y" : "x") })).status).toBe(401);
    expect((await t.api("POST", `/api/v1/certificates/${issued.body.serial}/revoke`, { token: tokens[0], json: { reason: "superseded" } })).status).toBe(200);
    for (const args of [["status"], ["revoke", issued.body.serial], ["rotate", "--dry-run"]]) {
      const r = await runCliInProcess(args, t.env);
      cliOutput.push(r.stdout, r.stderr);
    }
    expect(lines.length).toBeGreaterThan(5);
  });

  it("never shows a PIN or a token", () => {
    const pins = ["user.pin", "so.pin"].map((f) => fs.readFileSync(path.join(t.config.dataDir, "hsm", f), "utf8").trim());
    const everything = lines.join("\n") + cliOutput.join("\n");
    for (const pin of pins) {
      expect(pin.length).toBeGreaterThan(10);
      expect(everything).not.toContain(pin);
    }
    for (const token of tokens) {
      expect(token).toMatch(/^hsmca_[0-9a-f]{12}_/);
      expect(everything).not.toContain(token);
      expect(everything).not.toContain(token.slice("hsmca_".length + 13)); // not even the secret part alone
    }
    // The logs do say who acted: token ids (public) are there.
    expect(everything).toMatch(new RegExp(tokens[0]!.split("_")[1]!));
  });
});
