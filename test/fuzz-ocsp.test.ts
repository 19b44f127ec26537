/**
 * Hostile input, OCSP: mutated copies of real `openssl ocsp -reqout`
 * requests (with and without a nonce, SHA-1 and SHA-256 CertIDs, for a
 * certificate the service issued) sent to the responder on the plain-HTTP
 * listener as POST bodies and base64 in GET paths, plus mutated GET path
 * text and oversized bodies. Every answer must be HTTP 200 with a DER
 * OCSPResponse whose status is successful, malformedRequest or
 * unauthorized; never a 5xx, never a hang.
 */
import fs from "node:fs";
import path from "node:path";
import { BasicOCSPResponse, OCSPResponse, OCSPResponseStatus } from "@peculiar/asn1-ocsp";
import { AsnConvert } from "@peculiar/asn1-schema";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fuzzClient, mutate, mutateText, Rng, runPool, Tally } from "./helpers/fuzz.ts";
import { makeCsr, openssl, tempDir } from "./helpers/openssl.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

const SEED = 0x5eed_0c5;
const INPUTS = Number(process.env.HSM_CA_FUZZ_OCSP_INPUTS ?? 6_000);
const CONCURRENCY = 16;
const ALLOWED = new Set([OCSPResponseStatus.successful, OCSPResponseStatus.malformedRequest, OCSPResponseStatus.unauthorized]);

let t: TestService;
let work: string;
const requests: Uint8Array[] = [];

beforeAll(async () => {
  t = await startTestService("pglite");
  const token = await t.token("admin");
  const { csr } = makeCsr({ subject: "/CN=ocsp-fuzz.example.test", san: "DNS:ocsp-fuzz.example.test" });
  const res = await t.api("POST", "/api/v1/certificates", { token, json: { csr, profile: "tls-server" } });
  expect(res.status, res.text).toBe(201);
  work = tempDir("fuzz-ocsp-");
  fs.writeFileSync(path.join(work, "issuer.pem"), t.chainPem);
  fs.writeFileSync(path.join(work, "leaf.pem"), res.body.certificate);
  for (const flags of [[], ["-no_nonce"], ["-sha256"], ["-sha256", "-no_nonce"]]) {
    const out = path.join(work, "req.der");
    openssl(["ocsp", "-issuer", path.join(work, "issuer.pem"), ...flags, "-cert", path.join(work, "leaf.pem"), "-reqout", out]);
    requests.push(new Uint8Array(fs.readFileSync(out)));
  }
});

afterAll(async () => {
  await t?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

/** Bytes outside printable ASCII percent-encoded, so any text can be sent as a path. */
function pathSafe(text: string): string {
  return Array.from(Buffer.from(text, "utf8"))
    .map((b) => (b > 0x20 && b < 0x7f && b !== 0x23 && b !== 0x3f ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, "0")}`))
    .join("");
}

/** encodeURIComponent, or the text itself when it holds a lone surrogate. */
function uriEncoded(text: string): string {
  try {
    return encodeURIComponent(text);
  } catch {
    return text;
  }
}

describe("fuzzing the OCSP responder", () => {
  it(`answers ${INPUTS} mutated requests (POST and GET) with 200 and a DER OCSPResponse, never 5xx, never hangs`, async () => {
    const rng = new Rng(SEED);
    const client = fuzzClient(t.service.httpUrl, { sockets: CONCURRENCY, timeoutMs: 15_000 });

    // The unmutated requests are answered "successful".
    for (const der of requests) {
      const res = await client.request("POST", "/ocsp", der, { "content-type": "application/ocsp-request" });
      expect(res.status).toBe(200);
      expect(AsnConvert.parse(res.body, OCSPResponse).responseStatus).toBe(OCSPResponseStatus.successful);
    }

    const inputs: Array<{ kind: string; method: "POST" | "GET"; path: string; body?: Uint8Array }> = [];
    for (let i = 0; i < INPUTS; i++) {
      const roll = rng.int(100);
      const base = rng.pick(requests);
      if (roll < 50) {
        const m = mutate(base, rng, requests);
        inputs.push({ kind: `post:${m.how[0]}`, method: "POST", path: "/ocsp", body: m.bytes });
      } else if (roll < 85) {
        const m = mutate(base, rng, requests);
        const b64 = Buffer.from(m.bytes).toString("base64");
        inputs.push({ kind: `get:${m.how[0]}`, method: "GET", path: `/ocsp/${rng.chance(0.7) ? encodeURIComponent(b64) : b64}` });
      } else if (roll < 97) {
        const text = mutateText(Buffer.from(base).toString("base64"), rng);
        inputs.push({ kind: "get-text", method: "GET", path: `/ocsp/${pathSafe(rng.chance(0.5) ? text : uriEncoded(text))}` });
      } else {
        inputs.push({ kind: "post-oversized", method: "POST", path: "/ocsp", body: rng.bytes(rng.range(8 * 1024 + 1, 64 * 1024)) });
      }
    }

    const outcomes = new Tally();
    const failures: string[] = [];
    const started = Date.now();
    await runPool(inputs.length, CONCURRENCY, async (i) => {
      const input = inputs[i]!;
      let res;
      try {
        res = await client.request(input.method, input.path, input.body, input.body ? { "content-type": "application/ocsp-request" } : {});
      } catch (err) {
        failures.push(`#${i} ${input.kind}: ${(err as Error).message}`);
        return;
      }
      const what = () => `#${i} ${input.kind} ${input.method} ${input.path.slice(0, 200)} ${input.body ? Buffer.from(input.body).toString("base64").slice(0, 200) : ""}`;
      if (res.status !== 200 || res.headers["content-type"] !== "application/ocsp-response") {
        failures.push(`${what()}: HTTP ${res.status} ${res.headers["content-type"]} ${res.body.toString().slice(0, 200)}`);
        return;
      }
      let status: OCSPResponseStatus;
      try {
        const parsed = AsnConvert.parse(res.body, OCSPResponse);
        status = parsed.responseStatus;
        if (status === OCSPResponseStatus.successful) AsnConvert.parse(parsed.responseBytes!.response, BasicOCSPResponse);
      } catch (err) {
        failures.push(`${what()}: the answer is not a DER OCSPResponse (${(err as Error).message})`);
        return;
      }
      if (!ALLOWED.has(status)) failures.push(`${what()}: responseStatus ${OCSPResponseStatus[status]}`);
      outcomes.add(`${input.method} ${OCSPResponseStatus[status]}`);
    });
    const ms = Date.now() - started;
    client.close();
    console.log(`fuzz-ocsp: ${INPUTS} inputs in ${ms} ms (${Math.round((INPUTS / ms) * 1000)}/s, seed ${SEED}); ${outcomes}`);

    expect(failures.slice(0, 10)).toEqual([]);
    // Still answering, and still right.
    const again = await fetch(`${t.service.httpUrl}/ocsp`, { method: "POST", body: new Uint8Array(requests[1]!), headers: { "content-type": "application/ocsp-request" } });
    expect(AsnConvert.parse(new Uint8Array(await again.arrayBuffer()), OCSPResponse).responseStatus).toBe(OCSPResponseStatus.successful);
  }, 300_000);
});
