import net from "node:net";
import type { Context } from "hono";
import { parseCsr } from "../csr/parse-csr.ts";
import { derToPem } from "../asn1/pem.ts";
import { Rejection } from "../errors.ts";
import { issueCertificate } from "../issuance/issue-certificate.ts";
import { countIssuance } from "../metrics/issuance-outcome.ts";
import { canonicalIp } from "../policy/acme-identifiers.ts";
import { claimReadyOrder, updateOrder, type OrderRow } from "../store/acme-orders.ts";
import { chainsOf } from "../issuance/chains.ts";
import { listCas } from "../store/cas.ts";
import { listCrossCertificates } from "../store/cross-certificates.ts";
import { certificateForDownload } from "../store/acme-downloads.ts";
import { payloadObject } from "./accounts.ts";
import type { AcmeContext, AcmeDirectory } from "./context.ts";
import { notFound, ownOrder, postAsGet } from "./orders.ts";
import { AcmeProblem, CSR_REFUSALS } from "./problem.ts";
import { readSignedRequest } from "./signed-request.ts";
import type { AcmeUrls } from "./urls.ts";
import { orderView } from "./views.ts";

/**
 * finalize (§7.4): the CSR must name exactly the order's identifiers. A CSR
 * that is refused leaves the order "ready" for another try; a certificate
 * once signed is stored before the order says "valid".
 */
export async function finalize(c: Context, ctx: AcmeContext, dir: AcmeDirectory, urls: AcmeUrls, id: string): Promise<Response> {
  const req = await readSignedRequest(c, ctx, dir, urls, "kid");
  // The usual case in one statement: a well-formed CSR whose names are the
  // order's identifiers moves a ready order to processing. Anything else
  // reads the order and says what is wrong, in the RFC's order (the
  // order's state before the CSR's faults).
  const csrFirst = await readCsr(req.jws.payload).catch((err: Error) => err);
  const names = csrFirst instanceof Error ? undefined : namesOf(csrFirst.csr);
  const claimed = names && (await claimReadyOrder(ctx.db, id, req.account!.id, names, ctx.now()));
  let order: OrderRow;
  let authorizationIds: string[];
  let pem: string;
  if (claimed) {
    ({ order, authorizationIds } = claimed);
    pem = (csrFirst as { pem: string }).pem;
  } else {
    ({ order, authorizationIds } = await ownOrder(ctx, req, id));
    if (order.status !== "ready") {
      throw new AcmeProblem("orderNotReady", `the order is ${order.status}${order.status === "pending" ? ": complete its authorizations first" : ""}`);
    }
    if (csrFirst instanceof Error) throw csrFirst;
    checkNamesMatch(csrFirst.csr.sans, csrFirst.csr.subject.field("CN")[0], order.identifiers);
    // Ready, and a CSR that matches: another request moved it on in between.
    throw new AcmeProblem("orderNotReady", "the order is being finalized already");
  }
  let serial: string;
  try {
    const row = await asAcme(
      countIssuance(ctx.metrics, "acme", dir.certificateProfile.name, async () =>
        issueCertificate(
          { db: ctx.db, profiles: ctx.profiles, issuer: ctx.issuer(), revocation: ctx.revocation, audit: ctx.audit },
          // End-entity only, whatever the directory names: ACME never issues a CA certificate (loadAcmeProfiles refuses one too).
          { csrPem: pem, profile: dir.certificateProfile.name, requestedBy: `acme:${req.account!.id}`, kind: "end-entity" },
        ),
      ),
    );
    serial = row.serial;
  } catch (err) {
    await updateOrder(ctx.db, order.id, { status: "ready" }, "processing"); // nothing was issued: the client may try again
    throw err;
  }
  const done = (await updateOrder(ctx.db, order.id, { status: "valid", certificateSerial: serial }))!;
  ctx.log.info({ account: req.account!.id, order: order.id, serial }, "ACME order finalized");
  c.header("location", urls.order(order.id));
  return c.json(orderView(done, authorizationIds, urls));
}

/**
 * The certificate chain, PEM (§7.4.2): leaf, then the intermediate. The
 * chain names the issuer that actually signed it, also after a rotation.
 * During and after a root rollover there is another chain, to the other
 * root: served at the same URL with "/1" (and up), each response naming
 * the others with Link rel="alternate", so that a client can pick the chain
 * whose topmost issuer it trusts (certbot and lego --preferred-chain).
 */
export async function certificateRequest(c: Context, ctx: AcmeContext, dir: AcmeDirectory, urls: AcmeUrls, serial: string, alternate = "0"): Promise<Response> {
  const req = await readSignedRequest(c, ctx, dir, urls, "kid");
  postAsGet(req);
  const found = /^[0-9a-f]{1,40}$/.test(serial) ? await certificateForDownload(ctx.db, serial) : undefined;
  if (!found || found.cert.requestedBy !== `acme:${req.account!.id}`) throw notFound("certificate");
  const { cert } = found;
  // No rollover: the one chain, read with the certificate (with any external intermediates above the issuer).
  const chains = found.crossCertificates ? await rolloverChainsFor(ctx, cert.issuerId) : [found.chainPem];
  const index = /^[0-9]{1,2}$/.test(alternate) ? Number(alternate) : -1;
  const chain = chains[index];
  if (chain === undefined) throw notFound("certificate chain");
  const url = (i: number) => (i === 0 ? urls.certificate(serial) : `${urls.certificate(serial)}/${i}`);
  chains.forEach((_, i) => {
    if (i !== index) c.header("link", `<${url(i)}>;rel="alternate"`, { append: true });
  });
  return c.body(cert.certificatePem + chain, 200, { "content-type": "application/pem-certificate-chain" });
}

/** During or after a root rollover: the default chain first, then the alternates (the same order on every replica). */
async function rolloverChainsFor(ctx: AcmeContext, issuerId: number): Promise<string[]> {
  const chains = chainsOf(issuerId, await listCas(ctx.db), await listCrossCertificates(ctx.db), ctx.now());
  return chains ? [chains.default.chainPem, ...chains.alternates.map((a) => a.chainPem)] : [""];
}

/** The finalize payload's CSR, parsed (malformed or badCSR problems when it is not a usable request). */
async function readCsr(payload: unknown): Promise<{ pem: string; csr: Awaited<ReturnType<typeof parseCsr>> }> {
  const p = payloadObject(payload);
  if (typeof p.csr !== "string" || !/^[A-Za-z0-9_-]+$/.test(p.csr)) throw new AcmeProblem("malformed", "csr must be the base64url DER of a PKCS#10 request");
  const pem = derToPem(Buffer.from(p.csr, "base64url"), "CERTIFICATE REQUEST");
  return { pem, csr: await asAcme(parseCsr(pem)) };
}

/**
 * The CSR's names as order identifiers (as checkNamesMatch compares them),
 * or undefined when checkNamesMatch would refuse the CSR whatever the order:
 * a name of another type, or a common name that is not one of its names.
 */
function namesOf(csr: Awaited<ReturnType<typeof parseCsr>>): Array<{ type: string; value: string }> | undefined {
  const names = new Map<string, { type: string; value: string }>();
  for (const san of csr.sans) {
    if (san.type === "dns") names.set(`dns:${san.value.toLowerCase()}`, { type: "dns", value: san.value.toLowerCase() });
    else if (san.type === "ip" && net.isIP(san.value)) names.set(`ip:${canonicalIp(san.value)}`, { type: "ip", value: canonicalIp(san.value) });
    else return undefined;
  }
  const cn = csr.subject.field("CN")[0];
  if (cn !== undefined && !names.has(net.isIP(cn) ? `ip:${canonicalIp(cn)}` : `dns:${cn.toLowerCase()}`)) return undefined;
  return [...names.values()];
}

function checkNamesMatch(sans: Array<{ type: string; value: string }>, cn: string | undefined, identifiers: Array<{ type: string; value: string }>): void {
  const wanted = new Set(identifiers.map((i) => `${i.type}:${i.value}`));
  const got = new Set<string>();
  for (const san of sans) {
    if (san.type === "dns") got.add(`dns:${san.value.toLowerCase()}`);
    else if (san.type === "ip" && net.isIP(san.value)) got.add(`ip:${canonicalIp(san.value)}`);
    else throw new AcmeProblem("badCSR", `the CSR asks for a ${san.type} name, which the order does not have`);
  }
  const missing = [...wanted].filter((w) => !got.has(w));
  const extra = [...got].filter((g) => !wanted.has(g));
  if (missing.length || extra.length) {
    throw new AcmeProblem(
      "badCSR",
      `the CSR's names must equal the order's identifiers${missing.length ? `; missing: ${missing.join(", ")}` : ""}${extra.length ? `; not in the order: ${extra.join(", ")}` : ""}`,
    );
  }
  if (cn !== undefined) {
    const cnKey = net.isIP(cn) ? `ip:${canonicalIp(cn)}` : `dns:${cn.toLowerCase()}`;
    if (!wanted.has(cnKey)) throw new AcmeProblem("badCSR", `the CSR's common name "${cn}" is not one of the order's identifiers`);
  }
}

async function asAcme<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof Rejection) {
      const type = CSR_REFUSALS[err.kind];
      if (type) throw new AcmeProblem(type, err.detail);
    }
    throw err;
  }
}
