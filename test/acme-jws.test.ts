import crypto from "node:crypto";
import { describe, expect, it } from "vitest";
import { verifyExternalAccountBinding } from "../src/acme/eab.ts";
import { jwkFromSpki, jwkThumbprint, publicJwk, SUPPORTED_ALGS, type PublicJwk } from "../src/acme/jwk.ts";
import { MAX_JWS_BYTES, parseJws, parseJwsText, verifyJws } from "../src/acme/jws.ts";
import { AcmeProblem, type AcmeErrorType } from "../src/acme/problem.ts";
import {
  b64url,
  newAccountKey,
  signEab,
  signFlattened,
  signJws,
  thumbprint,
  type AccountKey,
  type AccountKeyKind,
} from "./helpers/acme-jws.ts";

const URL = "https://ca.example/acme/new-order";
const NONCE = b64url(crypto.randomBytes(16));
const ALL: AccountKeyKind[] = ["ES256", "ES384", "RS256", "EdDSA"];

/** Key generation (RSA especially) is slow: one key per kind per file. */
const keys = Object.fromEntries(ALL.map((k) => [k, newAccountKey(k)])) as Record<AccountKeyKind, AccountKey>;

/** The AcmeProblem a call throws; fails the test when it throws nothing or something else. */
function problemOf(fn: () => unknown): AcmeProblem {
  try {
    fn();
  } catch (err) {
    if (err instanceof AcmeProblem) return err;
    throw err;
  }
  throw new Error("expected an AcmeProblem, but nothing was thrown");
}

async function asyncProblemOf(p: Promise<unknown>): Promise<AcmeProblem> {
  try {
    await p;
  } catch (err) {
    if (err instanceof AcmeProblem) return err;
    throw err;
  }
  throw new Error("expected an AcmeProblem, but nothing was thrown");
}

const expectProblem = (fn: () => unknown, type: AcmeErrorType, detail?: RegExp): AcmeProblem => {
  const p = problemOf(fn);
  expect(p.type).toBe(type);
  if (detail) expect(p.detail).toMatch(detail);
  return p;
};

/** expectProblem for a promise: the problem it rejects with. */
const expectRejection = async (p: Promise<unknown>, type: AcmeErrorType, detail?: RegExp): Promise<AcmeProblem> => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  return expectProblem(() => {
    if (err !== undefined) throw err;
  }, type, detail);
};

/** parse, take the embedded key, verify: what the server does for newAccount. */
const parseAndVerify = async (body: unknown) => {
  const jws = parseJws(body);
  const key = publicJwk(jws.header.jwk);
  await verifyJws(jws, key);
  return { jws, key };
};

const decodeHeader = (body: { protected: string }) =>
  JSON.parse(Buffer.from(body.protected, "base64url").toString()) as Record<string, unknown>;

describe("flattened JWS round trips", () => {
  it.each(ALL)("%s signed with an embedded jwk parses and verifies", async (kind) => {
    const key = keys[kind];
    const body = signJws(key, { termsOfServiceAgreed: true, contact: ["mailto:a@example.com"] }, { nonce: NONCE, url: URL });
    const { jws, key: jwk } = await parseAndVerify(body);
    expect(jws.header.alg).toBe(kind);
    expect(jws.header.nonce).toBe(NONCE);
    expect(jws.header.url).toBe(URL);
    expect(jws.payload).toEqual({ termsOfServiceAgreed: true, contact: ["mailto:a@example.com"] });
    expect(jwkThumbprint(jwk)).toBe(thumbprint(key.jwk));
    expect(jws.raw).toEqual(body);
  });

  it.each(ALL)("%s signed with a kid verifies with the stored key", async (kind) => {
    const key = keys[kind];
    const stored = publicJwk(key.jwk);
    const body = signJws(key, { status: "deactivated" }, { nonce: NONCE, url: URL, kid: "https://ca.example/acme/acct/1" });
    const jws = parseJws(body);
    expect(jws.header.kid).toBe("https://ca.example/acme/acct/1");
    expect("jwk" in jws.header).toBe(false);
    await verifyJws(jws, stored);
  });

  it.each(ALL)("%s POST-as-GET has an undefined payload and verifies", async (kind) => {
    const key = keys[kind];
    const jws = parseJws(signJws(key, "", { nonce: NONCE, url: URL, kid: "https://ca.example/acme/acct/1" }));
    expect(jws.payload).toBeUndefined();
    expect(jws.raw.payload).toBe("");
    await verifyJws(jws, publicJwk(key.jwk));
  });

  it("an empty object payload is {} and not POST-as-GET", () => {
    const jws = parseJws(signJws(keys.ES256, {}, { nonce: NONCE, url: URL }));
    expect(jws.payload).toEqual({});
  });

  it("accepts a raw body through parseJwsText and ignores unknown top-level members", async () => {
    const body = { ...signJws(keys.ES256, { a: 1 }, { nonce: NONCE, url: URL }), unknownMember: 1 };
    const jws = parseJwsText(JSON.stringify(body));
    await verifyJws(jws, publicJwk(keys.ES256.jwk));
    expect(jws.payload).toEqual({ a: 1 });
  });
});

describe("tampering", () => {
  describe.each(ALL)("%s", (kind) => {
    const key = keys[kind];
    const body = () => signJws(key, { identifiers: [{ type: "dns", value: "a.example" }] }, { nonce: NONCE, url: URL });

    it("refuses a changed payload", async () => {
      const b = body();
      b.payload = b64url(JSON.stringify({ identifiers: [{ type: "dns", value: "b.example" }] }));
      await expectRejection(parseAndVerify(b), "malformed", /signature is invalid/);
    });

    it("refuses a changed protected header", async () => {
      const b = body();
      b.protected = b64url(JSON.stringify({ ...decodeHeader(b), url: "https://ca.example/acme/revoke-cert" }));
      await expectRejection(parseAndVerify(b), "malformed", /signature is invalid/);
    });

    it("refuses a changed signature", async () => {
      const b = body();
      const sig = Buffer.from(b.signature, "base64url");
      sig[sig.length >> 1]! ^= 0x01;
      b.signature = b64url(sig);
      await expectRejection(parseAndVerify(b), "malformed", /signature is invalid/);
    });

    it("refuses a truncated signature", async () => {
      const b = body();
      b.signature = b64url(Buffer.from(b.signature, "base64url").subarray(1));
      await expectRejection(parseAndVerify(b), "malformed", /signature is invalid/);
    });

    it("refuses a valid signature by another key of the same kind", async () => {
      const other = kind === "RS256" ? newAccountKey("RS256") : newAccountKey(kind);
      const b = signJws(other, { a: 1 }, { nonce: NONCE, url: URL, extra: { jwk: key.jwk } });
      await expectRejection(parseAndVerify(b), "malformed", /signature is invalid/);
    });
  });

  it.each(["ES256", "ES384"] as const)("%s refuses a DER-encoded ECDSA signature", async (kind) => {
    const key = keys[kind];
    const b = signJws(key, { a: 1 }, { nonce: NONCE, url: URL });
    const der = crypto.sign(kind === "ES256" ? "sha256" : "sha384", Buffer.from(`${b.protected}.${b.payload}`), {
      key: key.privateKey,
      dsaEncoding: "der",
    });
    await expectRejection(parseAndVerify({ ...b, signature: b64url(der) }), "malformed", /signature is invalid/);
  });
});

describe("algorithms", () => {
  it("refuses an ES256 header signed with (and verified against) a P-384 key", async () => {
    const b = signJws(keys.ES384, { a: 1 }, { nonce: NONCE, url: URL, alg: "ES256" });
    const p = await expectRejection(parseAndVerify(b), "badSignatureAlgorithm", /ES384/);
    expect(p.extra.algorithms).toEqual([...SUPPORTED_ALGS]);
  });

  it("refuses an RS256 header with an EC key", async () => {
    const b = signJws(keys.ES256, { a: 1 }, { nonce: NONCE, url: URL, alg: "RS256" });
    await expectRejection(parseAndVerify(b), "badSignatureAlgorithm", /ES256/);
  });

  it("refuses a header alg that does not fit the stored account key", async () => {
    const jws = parseJws(signJws(keys.EdDSA, { a: 1 }, { nonce: NONCE, url: URL, kid: "acct" }));
    await expectRejection(verifyJws(jws, publicJwk(keys.RS256.jwk)), "badSignatureAlgorithm");
  });

  it.each(["none", "HS256", "HS512", "PS256", "ES512", "RS384"])("refuses alg %s listing the supported algorithms", (alg) => {
    const b = signJws(keys.ES256, { a: 1 }, { nonce: NONCE, url: URL, alg });
    if (alg === "none") b.signature = "";
    const p = expectProblem(() => parseJws(b), "badSignatureAlgorithm");
    expect(p.extra.algorithms).toEqual(["ES256", "ES384", "RS256", "EdDSA"]);
    expect(p.toDocument()).toMatchObject({
      type: "urn:ietf:params:acme:error:badSignatureAlgorithm",
      status: 400,
      algorithms: ["ES256", "ES384", "RS256", "EdDSA"],
    });
  });

  it("refuses a missing alg as malformed", () => {
    const b = signJws(keys.ES256, { a: 1 }, { nonce: NONCE, url: URL, extra: { alg: undefined } });
    expect(decodeHeader(b)).not.toHaveProperty("alg");
    expectProblem(() => parseJws(b), "malformed", /alg/);
  });
});

describe("structure", () => {
  const good = () => signJws(keys.ES256, { a: 1 }, { nonce: NONCE, url: URL });

  it("parses the control body", async () => {
    await expect(parseAndVerify(good())).resolves.toBeDefined();
  });

  it("refuses a header with both jwk and kid", () => {
    const b = signJws(keys.ES256, { a: 1 }, { nonce: NONCE, url: URL, kid: "https://ca.example/acme/acct/1", useJwk: true });
    expect(decodeHeader(b)).toHaveProperty("jwk");
    expect(decodeHeader(b)).toHaveProperty("kid");
    expectProblem(() => parseJws(b), "malformed", /exactly one of "jwk" and "kid"/);
  });

  it("refuses a header with neither jwk nor kid", () => {
    const b = signJws(keys.ES256, { a: 1 }, { nonce: NONCE, url: URL, extra: { jwk: undefined } });
    expectProblem(() => parseJws(b), "malformed", /exactly one of "jwk" and "kid"/);
  });

  it("refuses an unprotected header member", () => {
    expectProblem(() => parseJws({ ...good(), header: { kid: "x" } }), "malformed", /unprotected header/);
  });

  it("refuses the compact serialization", () => {
    const b = good();
    const compact = `${b.protected}.${b.payload}.${b.signature}`;
    expectProblem(() => parseJws(compact), "malformed", /compact/);
    expectProblem(() => parseJwsText(compact), "malformed", /compact/);
  });

  it("refuses the general serialization", () => {
    const b = good();
    const general = { payload: b.payload, signatures: [{ protected: b.protected, signature: b.signature }] };
    expectProblem(() => parseJws(general), "malformed", /general/);
  });

  it.each([null, 42, [], "{}"])("refuses a body that is not a JWS object: %j", (body) => {
    expectProblem(() => parseJws(body), "malformed");
  });

  it.each(["protected", "payload", "signature"] as const)("refuses a missing or non-string %s", (member) => {
    const b: Record<string, unknown> = { ...good() };
    delete b[member];
    expectProblem(() => parseJws(b), "malformed", new RegExp(member));
    expectProblem(() => parseJws({ ...good(), [member]: 7 }), "malformed", new RegExp(member));
  });

  it("refuses padded or standard-alphabet base64", () => {
    const b = good();
    const padded = Buffer.from(b.protected, "base64url").toString("base64"); // has "=" and may have +/
    expect(padded).not.toBe(b.protected);
    expectProblem(() => parseJws({ ...b, protected: padded }), "malformed", /base64url/);
    expectProblem(() => parseJws({ ...b, signature: `${b.signature}=` }), "malformed", /base64url/);
    expectProblem(() => parseJws({ ...b, payload: `${b.payload}*` }), "malformed", /base64url/);
  });

  it("refuses non-canonical base64url (non-zero unused bits)", () => {
    const b = good();
    // A 64-byte ES256 signature is 86 characters; the last one carries 2 unused bits.
    const last = b.signature.at(-1)!;
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const twin = alphabet[alphabet.indexOf(last) + 1]!; // same decoded octets, a different encoding
    const altered = b.signature.slice(0, -1) + twin;
    expect(Buffer.from(altered, "base64url")).toEqual(Buffer.from(b.signature, "base64url"));
    expectProblem(() => parseJws({ ...b, signature: altered }), "malformed", /base64url/);
  });

  it("refuses a protected header that is not a JSON object", () => {
    const key = keys.ES256;
    expectProblem(() => parseJws({ ...good(), protected: b64url("{not json") }), "malformed", /protected header/);
    const arr = signFlattened(key, [] as unknown as Record<string, unknown>, b64url("{}"));
    expectProblem(() => parseJws(arr), "malformed", /protected header/);
  });

  it("refuses a payload that is not JSON, or JSON but not an object", () => {
    const key = keys.ES256;
    const header = { alg: "ES256", jwk: key.jwk, nonce: NONCE, url: URL };
    expectProblem(() => parseJws(signFlattened(key, header, b64url("not json"))), "malformed", /payload/);
    expectProblem(() => parseJws(signFlattened(key, header, b64url("[1,2]"))), "malformed", /payload/);
    expectProblem(() => parseJws(signFlattened(key, header, b64url("null"))), "malformed", /payload/);
    // the same header with a JSON object payload is fine
    expect(parseJws(signFlattened(key, header, b64url('{"x":1}'))).payload).toEqual({ x: 1 });
  });

  it("refuses crit extensions (e.g. RFC 7797 unencoded payload)", () => {
    const b = signJws(keys.ES256, { a: 1 }, { nonce: NONCE, url: URL, extra: { b64: false, crit: ["b64"] } });
    expectProblem(() => parseJws(b), "malformed", /crit/);
  });

  it("refuses a nonce that is not base64url, and a non-string url", () => {
    expectProblem(() => parseJws(signJws(keys.ES256, { a: 1 }, { nonce: "no+pe=", url: URL })), "malformed", /nonce/);
    expectProblem(() => parseJws(signJws(keys.ES256, { a: 1 }, { nonce: NONCE, extra: { url: 5 } })), "malformed", /url/);
  });

  it("leaves a missing nonce and url to the caller", () => {
    const jws = parseJws(signJws(keys.ES256, { a: 1 }, {}));
    expect(jws.header.nonce).toBeUndefined();
    expect(jws.header.url).toBeUndefined();
  });

  it("refuses an empty signature", () => {
    expectProblem(() => parseJws({ ...good(), signature: "" }), "malformed", /signature/);
  });

  it("parseJwsText refuses bodies over MAX_JWS_BYTES and non-JSON", () => {
    const big = signJws(keys.ES256, { pad: "x".repeat(MAX_JWS_BYTES) }, { nonce: NONCE, url: URL });
    expectProblem(() => parseJwsText(JSON.stringify(big)), "malformed", /exceeds/);
    expectProblem(() => parseJwsText("{oops"), "malformed", /not JSON/);
  });
});

describe("JWK", () => {
  it("computes the RFC 7638 §3.1 example thumbprint and drops non-required members", () => {
    const rfc = {
      kty: "RSA",
      n:
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
      e: "AQAB",
      alg: "RS256",
      kid: "2011-04-29",
    };
    const jwk = publicJwk(rfc);
    expect(Object.keys(jwk).sort()).toEqual(["e", "kty", "n"]);
    expect(jwkThumbprint(jwk)).toBe("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
  });

  it.each(ALL)("%s thumbprint is independent of member order and agrees with the client's", (kind) => {
    const jwk = keys[kind].jwk;
    const reversed = Object.fromEntries(Object.entries(jwk).reverse());
    expect(jwkThumbprint(publicJwk(reversed))).toBe(jwkThumbprint(publicJwk(jwk)));
    expect(jwkThumbprint(publicJwk(jwk))).toBe(thumbprint(jwk));
  });

  it("refuses a 1024-bit RSA key", () => {
    const weak = newAccountKey("RS256", { rsaBits: 1024 });
    expectProblem(() => publicJwk(weak.jwk), "badPublicKey", /1024 bits/);
  });

  it("refuses a leading-zero RSA modulus and a small exponent", () => {
    const n = Buffer.from(keys.RS256.jwk.n!, "base64url");
    expectProblem(() => publicJwk({ ...keys.RS256.jwk, n: b64url(Buffer.concat([Buffer.alloc(1), n])) }), "badPublicKey");
    expectProblem(() => publicJwk({ ...keys.RS256.jwk, e: "Aw" }), "badPublicKey", /exponent/); // e = 3
  });

  it.each(["d", "p", "q", "dp", "dq", "qi", "k"])("refuses a JWK carrying private member %s", (member) => {
    expectProblem(() => publicJwk({ ...keys.ES256.jwk, [member]: "AAAA" }), "badPublicKey", /private/);
  });

  it("refuses an exported private JWK of every kind", () => {
    for (const kind of ALL) {
      const priv = keys[kind].privateKey.export({ format: "jwk" });
      expectProblem(() => publicJwk(priv), "badPublicKey", /private/);
    }
  });

  it("refuses unsupported curves and key types", () => {
    const p521 = crypto.generateKeyPairSync("ec", { namedCurve: "P-521" }).publicKey.export({ format: "jwk" });
    expectProblem(() => publicJwk(p521), "badPublicKey", /unsupported EC curve "P-521"/);
    const ed448 = crypto.generateKeyPairSync("ed448").publicKey.export({ format: "jwk" });
    expectProblem(() => publicJwk(ed448), "badPublicKey", /Ed448/);
    expectProblem(() => publicJwk({ kty: "oct", k: "AAAA" }), "badPublicKey");
    expectProblem(() => publicJwk({ kty: "DSA", y: "AAAA" }), "badPublicKey", /key type/);
  });

  it("refuses EC coordinates of the wrong length (RFC 7518 keeps leading zeros)", () => {
    const x = Buffer.from(keys.ES256.jwk.x!, "base64url");
    const padded = b64url(Buffer.concat([Buffer.alloc(1), x]));
    expectProblem(() => publicJwk({ ...keys.ES256.jwk, x: padded }), "badPublicKey", /32 octets/);
    expectProblem(() => publicJwk({ ...keys.ES256.jwk, x: b64url(x.subarray(1)) }), "badPublicKey", /32 octets/);
  });

  it("refuses an EC point that is not on the curve", () => {
    const y = Buffer.from(keys.ES256.jwk.y!, "base64url");
    y[7]! ^= 0x10;
    expectProblem(() => publicJwk({ ...keys.ES256.jwk, y: b64url(y) }), "badPublicKey", /not a valid public key/);
  });

  it("refuses non-objects and missing members as malformed", () => {
    expectProblem(() => publicJwk("jwk"), "malformed");
    expectProblem(() => publicJwk(null), "malformed");
    expectProblem(() => publicJwk([]), "malformed");
    expectProblem(() => publicJwk({ kty: "EC", crv: "P-256", x: keys.ES256.jwk.x }), "malformed", /"y"/);
    expectProblem(() => publicJwk({ ...keys.ES256.jwk, x: "a+b/" }), "malformed", /base64url/);
  });

  it.each(ALL)("%s: jwkFromSpki gives the same key as the JWK", (kind) => {
    const spki = crypto.createPublicKey(keys[kind].privateKey).export({ format: "der", type: "spki" });
    const fromSpki: PublicJwk = jwkFromSpki(spki);
    expect(fromSpki).toEqual(publicJwk(keys[kind].jwk));
    const ab = spki.buffer.slice(spki.byteOffset, spki.byteOffset + spki.byteLength) as ArrayBuffer;
    expect(jwkThumbprint(jwkFromSpki(ab))).toBe(thumbprint(keys[kind].jwk));
  });

  it("jwkFromSpki refuses keys we do not accept", () => {
    const p521 = crypto.generateKeyPairSync("ec", { namedCurve: "P-521" }).publicKey.export({ format: "der", type: "spki" });
    expectProblem(() => jwkFromSpki(p521), "badPublicKey");
    expectProblem(() => jwkFromSpki(Buffer.from("not der")), "badPublicKey");
  });
});

describe("external account binding", () => {
  const NEW_ACCOUNT = "https://ca.example/acme/new-account";
  const KID = "eab-kid-1";
  const HMAC = b64url(crypto.randomBytes(32));
  /** A key that exists but may not bind (already used, or another directory's). */
  const USED_KID = "eab-kid-used";
  const USED_HMAC = b64url(crypto.randomBytes(32));
  const lookupKey = async (kid: string) =>
    kid === KID
      ? { hmacKey: Buffer.from(HMAC, "base64url") }
      : kid === USED_KID
        ? { hmacKey: Buffer.from(USED_HMAC, "base64url"), refusal: `key ${USED_KID} was already used` }
        : undefined;
  const account = keys.ES256;
  const outerJwk = publicJwk(account.jwk);
  const verify = (eab: unknown, url = NEW_ACCOUNT) => verifyExternalAccountBinding(eab, { outerJwk, url, lookupKey });

  it.each(["HS256", "HS384", "HS512"] as const)("accepts a valid %s binding and returns its kid", async (alg) => {
    await expect(verify(signEab(KID, HMAC, account.jwk, NEW_ACCOUNT, { alg }))).resolves.toBe(KID);
  });

  it("refuses a MAC made with the wrong key as unauthorized", async () => {
    const p = await asyncProblemOf(verify(signEab(KID, b64url(crypto.randomBytes(32)), account.jwk, NEW_ACCOUNT)));
    expect(p.type).toBe("unauthorized");
    expect(p.detail).toMatch(/MAC/);
  });

  it("refuses a tampered payload as unauthorized", async () => {
    const eab = signEab(KID, HMAC, account.jwk, NEW_ACCOUNT);
    eab.payload = b64url(JSON.stringify(keys.ES384.jwk));
    const p = await asyncProblemOf(verify(eab));
    expect(p.type).toBe("unauthorized");
    expect(p.detail).toMatch(/MAC/);
  });

  it("refuses an unknown kid as unauthorized", async () => {
    const p = await asyncProblemOf(verify(signEab("someone-else", HMAC, account.jwk, NEW_ACCOUNT)));
    expect(p.type).toBe("unauthorized");
    expect(p.detail).toMatch(/not known/);
  });

  it("says why a key that may not bind is refused, once its MAC verifies; to anyone else it is unknown", async () => {
    const told = await asyncProblemOf(verify(signEab(USED_KID, USED_HMAC, account.jwk, NEW_ACCOUNT)));
    expect(told.type).toBe("unauthorized");
    expect(told.detail).toBe(`externalAccountBinding key ${USED_KID} was already used`);
    const guessed = await asyncProblemOf(verify(signEab(USED_KID, b64url(crypto.randomBytes(32)), account.jwk, NEW_ACCOUNT)));
    expect(guessed.type).toBe("unauthorized");
    expect(guessed.detail).toBe("externalAccountBinding key identifier is not known");
  });

  it("refuses a binding of a different key as unauthorized", async () => {
    const p = await asyncProblemOf(verify(signEab(KID, HMAC, keys.EdDSA.jwk, NEW_ACCOUNT)));
    expect(p.type).toBe("unauthorized");
    expect(p.detail).toMatch(/different key/);
  });

  it("accepts the account key with extra members or another member order", async () => {
    const reordered = { ...Object.fromEntries(Object.entries(account.jwk).reverse()), use: "sig" };
    await expect(verify(signEab(KID, HMAC, reordered, NEW_ACCOUNT))).resolves.toBe(KID);
  });

  it("refuses a url other than the newAccount URL as malformed", async () => {
    const p = await asyncProblemOf(verify(signEab(KID, HMAC, account.jwk, "https://ca.example/acme/new-order")));
    expect(p.type).toBe("malformed");
    expect(p.detail).toMatch(/url/);
  });

  it("refuses a binding with a nonce as malformed", async () => {
    const p = await asyncProblemOf(verify(signEab(KID, HMAC, account.jwk, NEW_ACCOUNT, { extra: { nonce: NONCE } })));
    expect(p.type).toBe("malformed");
    expect(p.detail).toMatch(/nonce/);
  });

  it("refuses a non-MAC alg, a missing kid and a non-JWS value as malformed", async () => {
    const rs = signFlattened(account, { alg: "ES256", kid: KID, url: NEW_ACCOUNT }, b64url(JSON.stringify(account.jwk)));
    expect((await asyncProblemOf(verify(rs))).detail).toMatch(/alg/);
    const noKid = signEab(KID, HMAC, account.jwk, NEW_ACCOUNT, { extra: { kid: undefined } });
    expect((await asyncProblemOf(verify(noKid))).detail).toMatch(/kid/);
    for (const bad of [undefined, "a.b.c", { protected: 1 }, { ...signEab(KID, HMAC, account.jwk, NEW_ACCOUNT), header: {} }]) {
      expect((await asyncProblemOf(verify(bad))).type).toBe("malformed");
    }
  });

  it("refuses a payload that is not a JWK as malformed", async () => {
    const p = await asyncProblemOf(verify(signEab(KID, HMAC, { hello: "world" }, NEW_ACCOUNT)));
    expect(p.type).toBe("malformed");
  });
});
