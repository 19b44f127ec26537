import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import { createLogger } from "../src/logger.ts";
import { startService, type Service } from "../src/service.ts";
import { AcmeClient } from "./helpers/acme-client.ts";
import { newAccountKey } from "./helpers/acme-jws.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

/**
 * Two replicas of the service on one PostgreSQL database and one HSM token
 * (as behind a load balancer): a nonce from one is good at the other, once;
 * an account and order made at one are served by the other.
 */
let a: TestService;
let b: Service;

beforeAll(async () => {
  a = await startTestService("postgres");
  b = await startService(loadConfig({ ...a.env, HSM_CA_HTTPS_PORT: "0", HSM_CA_HTTP_PORT: "0" }), createLogger("silent"));
});
afterAll(async () => {
  await b?.close();
  await a?.stop();
});

describe("two replicas on one database", () => {
  it("share the CA hierarchy rather than each creating one", async () => {
    const rootB = await (await fetch(`${b.httpUrl}/ca/root.pem`)).text();
    expect(rootB).toBe(a.rootPem);
  });

  it("accept each other's nonces, each once", async () => {
    const atA = new AcmeClient(a.service.httpsUrl, a.rootPem);
    const atB = new AcmeClient(b.httpsUrl, a.rootPem);
    await atA.init();
    await atB.init();
    const nonceFromA = (await atA.request("HEAD", atA.directory.newNonce)).nonce!;
    const key = newAccountKey("ES256");
    const created = await atB.post(atB.directory.newAccount, key, { termsOfServiceAgreed: true }, { nonce: nonceFromA });
    expect(created.status).toBe(201);
    // The same nonce again, at the replica that issued it: used up.
    const replay = await atA.post(atA.directory.newAccount, key, { termsOfServiceAgreed: true }, { nonce: nonceFromA });
    expect(replay.status).toBe(400);
    expect(replay.body.type).toBe("urn:ietf:params:acme:error:badNonce");
    // A fresh nonce to retry with (RFC 8555 §6.5), not the used one.
    expect(replay.nonce).toMatch(/^[A-Za-z0-9_-]{16,}$/);
    expect(replay.nonce).not.toBe(nonceFromA);

    // The account made at B orders at A, and B serves the order.
    const accountPath = new URL(created.location!).pathname;
    const order = await atA.postAs({ key, url: a.service.httpsUrl + accountPath }, atA.directory.newOrder, {
      identifiers: [{ type: "dns", value: "replica.example.test" }],
    });
    expect(order.status).toBe(201);
    const orderPath = new URL(order.location!).pathname;
    const seenAtB = await atB.postAs({ key, url: b.httpsUrl + accountPath }, b.httpsUrl + orderPath, "");
    expect(seenAtB.status).toBe(200);
    expect(seenAtB.body.identifiers).toEqual([{ type: "dns", value: "replica.example.test" }]);
    atA.close();
    atB.close();
  });
});
