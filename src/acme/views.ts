import type { AcmeAccountRow } from "../store/acme-accounts.ts";
import type { AuthorizationRow, ChallengeRow, OrderRow } from "../store/acme-orders.ts";
import type { AcmeUrls } from "./urls.ts";

/** The JSON bodies of RFC 8555 §7.1 resources. */

export function accountView(a: AcmeAccountRow, urls: AcmeUrls) {
  return {
    status: a.status,
    contact: a.contact,
    orders: urls.accountOrders(a.id),
    ...(a.eabKid ? { externalAccountBinding: { kid: a.eabKid } } : {}),
    createdAt: a.createdAt.toISOString(),
  };
}

export function orderView(o: OrderRow, authorizationIds: string[], urls: AcmeUrls) {
  return {
    status: o.status,
    expires: o.expiresAt.toISOString(),
    identifiers: o.identifiers,
    authorizations: authorizationIds.map((id) => urls.authorization(id)),
    finalize: urls.finalize(o.id),
    ...(o.certificateSerial ? { certificate: urls.certificate(o.certificateSerial) } : {}),
    ...(o.error ? { error: o.error } : {}),
    ...(o.replaces ? { replaces: o.replaces } : {}),
  };
}

export function challengeView(ch: ChallengeRow, urls: AcmeUrls) {
  return {
    type: ch.type,
    url: urls.challenge(ch.id),
    status: ch.status,
    token: ch.token,
    ...(ch.validated ? { validated: ch.validated.toISOString() } : {}),
    ...(ch.error ? { error: ch.error } : {}),
  };
}

export function authorizationView(a: AuthorizationRow, challenges: ChallengeRow[], urls: AcmeUrls) {
  // A valid authorization lists the challenge that validated it (RFC 8555 §7.1.4).
  const shown = a.status === "valid" ? challenges.filter((c) => c.status === "valid") : challenges;
  return {
    identifier: { type: a.identifierType, value: a.identifierValue },
    status: a.status,
    expires: a.expiresAt.toISOString(),
    challenges: shown.map((c) => challengeView(c, urls)),
    ...(a.wildcard ? { wildcard: true } : {}),
  };
}
