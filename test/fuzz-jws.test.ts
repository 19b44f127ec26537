/**
 * Hostile input, ACME: mutated request bodies POSTed to newAccount (signed
 * with a jwk) and newOrder (signed with an account's kid). Each starts as a
 * correctly signed flattened JWS (test/helpers/acme-jws.ts) with a fresh
 * nonce, then its JSON text, its decoded protected header, payload or
 * signature, or its base64url members are mutated; some are re-signed after
 * the mutation, so that hostile headers and payloads reach past the
 * signature check. Every answer must be an ACME problem
 * (urn:ietf:params:acme:error:*) with a 4xx status and a Replay-Nonce (or a
 * 2xx when a re-signed mutation is still a valid request), never a 5xx,
 * never a hang.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { b64url, newAccountKey, signFlattened, signJws, protectedHeader, type AccountKey } from "./helpers/acme-jws.ts";
import { fuzzClient, mutate, mutateText, Rng, runPool, Tally } from "./helpers/fuzz.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

const SEED = 0x5eed_1a5;
const INPUTS = Number(process.env.HSM_CA_FUZZ_JWS_INPUTS ?? 4_000);
const CONCURRENCY = 16;
const ERR = "urn:ietf:params:acme:error:";

let t: TestService;
let client: ReturnType<typeof fuzzClient>;
let directory: Record<string, string>;

beforeAll(async () => {
  // One account sends thousands of requests here: no per-account request limit.
  process.env.HSM_CA_ACME_RATE_LIMIT_PER_ACCOUNT = "off";
  t = await startTestService("pglite", { HSM_CA_ACME_RATE_LIMIT_PER_ACCOUNT: "off" });
  client = fuzzClient(t.service.httpsUrl, { ca: t.rootPem, sockets: CONCURRENCY, timeoutMs: 15_000 });
  const res = await client.request("GET", "/acme/directory");
  directory = JSON.parse(res.body.toString());
});

afterAll(async () => {
  client?.close();
  await t?.stop();
});

const JOSE = { "content-type": "application/jose+json" };

/** Weird JSON values for structure-aware mutations. */
function weirdValue(rng: Rng): unknown {
  return rng.pick<() => unknown>([
    () => null,
    () => true,
    () => 0,
    () => -1,
    () => 1e308,
    () => "",
    () => "x".repeat(rng.range(1, 5000)),
    () => "\u0000\uFFFF\uD800",
    () => [],
    () => [null, 1, "a"],
    () => ({}),
    () => JSON.parse('{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}'),
    () => Array.from({ length: rng.range(1, 300) }, () => ({ type: "dns", value: "a.example.test" })),
    () => b64url(rng.bytes(rng.int(64))),
    () => "https://evil.example/acme/acct/1",
    () => "../../../etc/passwd",
    () => "*.*.example.test",
    () => "127.0.0.1",
    () => "2001:db8::1",
    () => "é.example.test",
    () => "a".repeat(64) + ".example.test",
  ])();
}

function mutateObject(obj: Record<string, unknown>, rng: Rng): Record<string, unknown> {
  const out: Record<string, unknown> = JSON.parse(JSON.stringify(obj));
  for (let k = rng.range(1, 3); k > 0; k--) {
    const keys = Object.keys(out);
    const roll = rng.int(5);
    if (roll === 0 && keys.length) delete out[rng.pick(keys)];
    else if (roll === 1) {
      const name = rng.pick(["jwk", "kid", "nonce", "url", "alg", "crit", "b64", "identifiers", "contact", "onlyReturnExisting", "externalAccountBinding", "notBefore", "notAfter", "replaces", "termsOfServiceAgreed", "x5c", "__proto__"]);
      // defineProperty: an own "__proto__" member, as JSON.parse makes one.
      Object.defineProperty(out, name, { value: weirdValue(rng), enumerable: true, writable: true, configurable: true });
    }
    else if (keys.length) {
      const key = rng.pick(keys);
      const v = out[key];
      if (v && typeof v === "object" && !Array.isArray(v) && rng.chance(0.6)) out[key] = mutateObject(v as Record<string, unknown>, rng);
      else if (Array.isArray(v) && v.length && rng.chance(0.6)) {
        const i = rng.int(v.length);
        v[i] = v[i] && typeof v[i] === "object" ? mutateObject(v[i] as Record<string, unknown>, rng) : weirdValue(rng);
      } else out[key] = weirdValue(rng);
    }
  }
  return out;
}

interface Target {
  name: "newAccount" | "newOrder";
  url: string;
  key: AccountKey;
  kid?: string;
  payload: Record<string, unknown>;
}

/** One mutated body from a correctly signed one; returns the body and what was done. */
function mutatedBody(target: Target, nonce: string, rng: Rng): { kind: string; body: Uint8Array | string; contentType?: string } {
  const header = protectedHeader(target.key, { url: target.url, nonce, kid: target.kid });
  const valid = signJws(target.key, target.payload, { url: target.url, nonce, kid: target.kid });
  const enc = (o: object) => JSON.stringify(o);
  const roll = rng.int(100);
  if (roll < 15) {
    const m = mutate(new TextEncoder().encode(enc(valid)), rng);
    return { kind: `json-text:${m.how[0]}`, body: m.bytes };
  }
  if (roll < 25) {
    const which = rng.pick(["protected", "payload", "signature"] as const);
    const m = mutate(Buffer.from(valid[which], "base64url"), rng);
    return { kind: `decoded-${which}:${m.how[0]}`, body: enc({ ...valid, [which]: b64url(m.bytes) }) };
  }
  if (roll < 35) {
    const which = rng.pick(["protected", "payload", "signature"] as const);
    return { kind: `b64-${which}`, body: enc({ ...valid, [which]: mutateText(valid[which], rng) }) };
  }
  if (roll < 55) {
    // Header mutated, then signed properly: hostile headers past the signature.
    const h = mutateObject(header, rng);
    return { kind: "resigned-header", body: enc(signFlattened(target.key, h, b64url(enc(target.payload)))) };
  }
  if (roll < 80) {
    // Payload mutated, then signed properly: hostile payloads reach the handler.
    const p = rng.chance(0.1) ? weirdValue(rng) : mutateObject(target.payload, rng);
    const payloadB64 = rng.chance(0.05) ? b64url(rng.bytes(rng.int(100))) : b64url(enc(p as object));
    return { kind: "resigned-payload", body: enc(signFlattened(target.key, header, payloadB64)) };
  }
  if (roll < 88) {
    // The outer object's members.
    return { kind: "outer-object", body: enc(mutateObject(valid as unknown as Record<string, unknown>, rng)) };
  }
  if (roll < 92) {
    return { kind: "content-type", body: enc(valid), contentType: rng.pick(["application/json", "text/plain", "", "application/jose+json; charset=\u00ff", "application/jose"]) };
  }
  if (roll < 96) {
    return { kind: "compact", body: `${valid.protected}.${valid.payload}.${valid.signature}` };
  }
  return { kind: "random", body: rng.bytes(rng.int(2048)) };
}

describe("fuzzing ACME newAccount and newOrder", () => {
  it(`answers ${INPUTS} mutated JWS bodies with 4xx ACME problems and a Replay-Nonce, never 5xx, never hangs`, async () => {
    const rng = new Rng(SEED);
    const headNonce = async () => (await client.request("HEAD", directory.newNonce!)).headers["replay-nonce"] as string;

    // The account newOrder requests are signed for, made the ordinary way.
    const key = newAccountKey("ES256");
    const acct = await client.request("POST", directory.newAccount!, JSON.stringify(signJws(key, { termsOfServiceAgreed: true }, { url: directory.newAccount, nonce: await headNonce() })), JOSE);
    expect(acct.status, acct.body.toString()).toBe(201);
    const kid = acct.headers.location as string;

    const targets: Target[] = [
      { name: "newAccount", url: directory.newAccount!, key: newAccountKey("ES256"), payload: { termsOfServiceAgreed: true, contact: ["mailto:fuzz@example.test"] } },
      { name: "newAccount", url: directory.newAccount!, key: newAccountKey("EdDSA"), payload: { onlyReturnExisting: true } },
      { name: "newOrder", url: directory.newOrder!, key, kid, payload: { identifiers: [{ type: "dns", value: "fuzz.example.test" }, { type: "ip", value: "127.0.0.1" }] } },
      { name: "newOrder", url: directory.newOrder!, key, kid, payload: { identifiers: [{ type: "dns", value: "*.fuzz.example.test" }], notAfter: new Date(Date.now() + 86_400_000).toISOString() } },
    ];

    const outcomes = new Tally();
    const successes = new Tally();
    const failures: string[] = [];
    // Each worker uses the nonce of its previous answer, as a client does.
    const nonces: string[] = [];
    for (let w = 0; w < CONCURRENCY; w++) nonces.push(await headNonce());
    // Inputs depend on the nonce, so they cannot all be made up front; one
    // generator per worker keeps every worker's sequence deterministic.
    const rngs = Array.from({ length: CONCURRENCY }, (_, w) => new Rng(SEED + w + 1 + rng.int(1000)));

    const slowest: Array<{ ms: number; what: string }> = [];
    const started = Date.now();
    await runPool(INPUTS, CONCURRENCY, async (i, w) => {
      const r = rngs[w]!;
      const target = r.pick(targets);
      const { kind, body, contentType } = mutatedBody(target, nonces[w]!, r);
      let res;
      const sent = Date.now();
      try {
        res = await client.request("POST", target.url, body, { "content-type": contentType ?? JOSE["content-type"] });
        slowest.push({ ms: Date.now() - sent, what: `${target.name} ${kind} -> ${res.status}` });
        if (slowest.length > 20) slowest.sort((a, b) => b.ms - a.ms).splice(5);
      } catch (err) {
        failures.push(`#${i} ${target.name} ${kind}: ${(err as Error).message}`);
        return;
      }
      const nonce = res.headers["replay-nonce"];
      if (typeof nonce === "string" && nonce) nonces[w] = nonce;
      else failures.push(`#${i} ${target.name} ${kind}: HTTP ${res.status} without a Replay-Nonce`);
      if (res.status >= 200 && res.status < 300) {
        successes.add(`${target.name} ${res.status} ${kind}`);
        outcomes.add(`${res.status}`);
        return;
      }
      let doc: { type?: unknown; status?: unknown } | undefined;
      try {
        doc = JSON.parse(res.body.toString("utf8"));
      } catch {
        doc = undefined;
      }
      const ok =
        res.status >= 400 &&
        res.status <= 499 &&
        /^application\/problem\+json/.test(String(res.headers["content-type"])) &&
        doc?.status === res.status &&
        typeof doc?.type === "string" &&
        doc.type.startsWith(ERR);
      if (!ok) {
        failures.push(`#${i} ${target.name} ${kind}: HTTP ${res.status} ${res.body.toString().slice(0, 300)} for ${Buffer.from(body).toString().slice(0, 300)}`);
        return;
      }
      outcomes.add(`${res.status} ${String(doc!.type).slice(ERR.length)}`);
    });
    const ms = Date.now() - started;
    console.log(`fuzz-jws: ${INPUTS} inputs in ${ms} ms (${Math.round((INPUTS / ms) * 1000)}/s, seed ${SEED}); ${outcomes}; 2xx: ${successes}; slowest: ${slowest.sort((a, b) => b.ms - a.ms).slice(0, 5).map((x) => `${x.ms} ms ${x.what}`).join(", ")}`);

    expect(failures.slice(0, 10)).toEqual([]);
    // Still up, and still an ACME server: a fresh nonce and a real order.
    const order = await client.request(
      "POST",
      directory.newOrder!,
      JSON.stringify(signJws(key, { identifiers: [{ type: "dns", value: "after.example.test" }] }, { url: directory.newOrder, nonce: await headNonce(), kid })),
      JOSE,
    );
    expect([201, 429], order.body.toString()).toContain(order.status);
  }, 300_000);
});
