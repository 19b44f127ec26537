import crypto from "node:crypto";
import type { Context } from "hono";
import { accountByThumbprint, insertAccount, updateAccount, type AcmeAccountRow } from "../store/acme-accounts.ts";
import { bindEabKey, eabKeyByKid } from "../store/acme-eab-keys.ts";
import type { Database } from "../store/database.ts";
import { isUniqueViolation } from "../store/errors.ts";
import type { AcmeContext, AcmeDirectory } from "./context.ts";
import { verifyExternalAccountBinding } from "./eab.ts";
import { EabKeyUnusable, openEabHmacKey } from "./eab-keys.ts";
import { jwkThumbprint, publicJwk, sameKey } from "./jwk.ts";
import { parseJws, verifyJws } from "./jws.ts";
import { AcmeProblem } from "./problem.ts";
import { readSignedRequest } from "./signed-request.ts";
import type { AcmeUrls } from "./urls.ts";
import { accountView } from "./views.ts";

const MAX_CONTACTS = 10;

/** newAccount (RFC 8555 §7.3), with External Account Binding (§7.3.4) when given or required. */
export async function newAccount(c: Context, ctx: AcmeContext, dir: AcmeDirectory, urls: AcmeUrls): Promise<Response> {
  const req = await readSignedRequest(c, ctx, dir, urls, "jwk");
  const p = payloadObject(req.jws.payload);
  const thumbprint = jwkThumbprint(req.jwk);
  const existing = await accountByThumbprint(ctx.db, dir.profile.name, thumbprint);
  if (existing) {
    // A deactivated account's key authorizes nothing any more (§7.3.6).
    if (existing.status !== "valid") throw new AcmeProblem("unauthorized", `the account for this key is ${existing.status}`);
    c.header("location", urls.account(existing.id));
    return c.json(accountView(existing, urls), 200);
  }
  if (p.onlyReturnExisting === true) throw new AcmeProblem("accountDoesNotExist", "no account exists for this key");
  if (dir.profile.termsOfService && p.termsOfServiceAgreed !== true) {
    throw new AcmeProblem("userActionRequired", `agree to the terms of service at ${dir.profile.termsOfService}`);
  }
  const contact = checkContacts(p.contact);
  let eabKid: string | undefined;
  if (p.externalAccountBinding !== undefined) {
    eabKid = await verifyExternalAccountBinding(p.externalAccountBinding, {
      outerJwk: req.jwk,
      url: req.url,
      lookupKey: async (kid) => {
        const key = await eabKeyByKid(ctx.db, kid);
        if (!key) return undefined;
        const refusal =
          key.directory !== dir.profile.name
            ? `key ${kid} is for the ACME directory "${key.directory}", not "${dir.profile.name}": register there, or ask the CA's admins for a key for this one`
            : key.accountId !== null
              ? `key ${kid} was already used: it bound an account${key.boundAt ? ` at ${key.boundAt.toISOString()}` : ""}, and a key binds one account only; ask the CA's admins for a new one`
              : undefined;
        try {
          return { hmacKey: await openEabHmacKey(ctx.eabSealer, key), refusal };
        } catch (err) {
          if (!(err instanceof EabKeyUnusable)) throw err;
          // Refused anyway, and its MAC cannot be checked: as unknown as before.
          if (refusal) return undefined;
          // A row this CA's HSM cannot open was not made here, or was altered: the operator should know.
          ctx.log.warn({ kid, directory: dir.profile.name, reason: err.message }, "an EAB key in the database cannot be used");
          throw new AcmeProblem("unauthorized", "externalAccountBinding key cannot be used: ask the CA's admins for a new one");
        }
      },
    });
  } else if (dir.profile.externalAccountRequired) {
    throw new AcmeProblem("externalAccountRequired", "this directory requires External Account Binding: ask the CA's admins for a key (hsm-ca acme eab create)");
  }
  const account = await ctx.db.transaction(async (tx) => {
    const row = await insertAccount(tx as unknown as Database, {
      id: crypto.randomBytes(12).toString("base64url"),
      directory: dir.profile.name,
      keyThumbprint: thumbprint,
      jwk: req.jwk as unknown as Record<string, string>,
      contact,
      eabKid: eabKid ?? null,
    });
    if (eabKid && !(await bindEabKey(tx as unknown as Database, eabKid, row.id, ctx.now()))) {
      throw new AcmeProblem("unauthorized", `the EAB key ${eabKid} is already bound to another account`);
    }
    return row;
  });
  ctx.log.info({ account: account.id, directory: dir.profile.name, eab: eabKid ?? null }, "ACME account created");
  c.header("location", urls.account(account.id));
  return c.json(accountView(account, urls), 201);
}

/** POST to the account URL: fetch (POST-as-GET), update contact, or deactivate (§7.3.2, §7.3.6). */
export async function accountRequest(c: Context, ctx: AcmeContext, dir: AcmeDirectory, urls: AcmeUrls, id: string): Promise<Response> {
  const req = await readSignedRequest(c, ctx, dir, urls, "kid");
  const account = ownAccount(req.account!, id);
  if (req.jws.payload === undefined) return c.json(accountView(account, urls));
  const p = payloadObject(req.jws.payload);
  let updated: AcmeAccountRow = account;
  if (p.status !== undefined) {
    if (p.status !== "deactivated") throw new AcmeProblem("malformed", 'an account\'s status can only be changed to "deactivated"');
    updated = await updateAccount(ctx.db, account.id, { status: "deactivated" });
    ctx.log.info({ account: account.id }, "ACME account deactivated");
  }
  if (p.contact !== undefined) updated = await updateAccount(ctx.db, account.id, { contact: checkContacts(p.contact) });
  return c.json(accountView(updated, urls));
}

/** The account's orders list (§7.1.2.1); this CA keeps it short: orders are purged after expiry. */
export async function accountOrders(c: Context, ctx: AcmeContext, dir: AcmeDirectory, urls: AcmeUrls, id: string, orderIds: (accountId: string) => Promise<string[]>): Promise<Response> {
  const req = await readSignedRequest(c, ctx, dir, urls, "kid");
  const account = ownAccount(req.account!, id);
  return c.json({ orders: (await orderIds(account.id)).map((o) => urls.order(o)) });
}

/** keyChange (§7.3.5): an inner JWS signed by the new key, inside one signed by the old. */
export async function keyChange(c: Context, ctx: AcmeContext, dir: AcmeDirectory, urls: AcmeUrls): Promise<Response> {
  const req = await readSignedRequest(c, ctx, dir, urls, "kid");
  const account = req.account!;
  const inner = parseJws(req.jws.payload);
  if (inner.header.jwk === undefined || inner.header.kid !== undefined) {
    throw new AcmeProblem("malformed", 'the inner JWS must carry the new key as "jwk" and no "kid"');
  }
  if (inner.header.url !== req.url) throw new AcmeProblem("malformed", "the inner JWS url must equal the outer JWS url");
  const newKey = publicJwk(inner.header.jwk);
  await verifyJws(inner, newKey);
  const p = payloadObject(inner.payload);
  if (p.account !== urls.account(account.id)) throw new AcmeProblem("malformed", "the inner payload's account is not the signing account");
  if (!sameKey(publicJwk(p.oldKey), req.jwk)) throw new AcmeProblem("malformed", "the inner payload's oldKey is not the account's current key");
  const thumbprint = jwkThumbprint(newKey);
  const taken = await accountByThumbprint(ctx.db, dir.profile.name, thumbprint);
  if (taken) {
    c.header("location", urls.account(taken.id));
    throw new AcmeProblem("malformed", "the new key is already used by an account", { status: 409 });
  }
  try {
    const updated = await updateAccount(ctx.db, account.id, { jwk: newKey as unknown as Record<string, string>, keyThumbprint: thumbprint });
    ctx.log.info({ account: account.id }, "ACME account key changed");
    return c.json(accountView(updated, urls));
  } catch (err) {
    if (isUniqueViolation(err)) throw new AcmeProblem("malformed", "the new key is already used by an account", { status: 409 });
    throw err;
  }
}

export function payloadObject(payload: unknown): Record<string, unknown> {
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
    throw new AcmeProblem("malformed", "the JWS payload must be a JSON object");
  }
  return payload as Record<string, unknown>;
}

function ownAccount(account: AcmeAccountRow, id: string): AcmeAccountRow {
  if (account.id !== id) throw new AcmeProblem("unauthorized", "the request is signed by another account");
  return account;
}

/** mailto: addresses only (§7.3): anything else is unsupportedContact, a bad address invalidContact. */
function checkContacts(contact: unknown): string[] {
  if (contact === undefined) return [];
  if (!Array.isArray(contact) || !contact.every((x) => typeof x === "string")) {
    throw new AcmeProblem("malformed", "contact must be an array of URLs");
  }
  if (contact.length > MAX_CONTACTS) throw new AcmeProblem("malformed", `at most ${MAX_CONTACTS} contacts`);
  for (const url of contact) {
    if (!url.startsWith("mailto:")) throw new AcmeProblem("unsupportedContact", `only mailto: contacts are supported, not "${url.slice(0, 60)}"`);
    const address = url.slice("mailto:".length);
    if (!/^[^@\s,?&]+@[a-z0-9.-]+\.[a-z]{2,}$/i.test(address)) throw new AcmeProblem("invalidContact", `"${url.slice(0, 80)}" is not a valid email contact`);
  }
  return contact as string[];
}
