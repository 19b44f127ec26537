import crypto from "node:crypto";
import * as graphene from "graphene-pk11";
import { HsmKeyError } from "./errors.ts";
import type { CaKeyAlgorithm } from "./key-algorithms.ts";
import type { ExistingKey, KeyProvenance, KeySelector } from "./key-manager.ts";
import { ckaIdOf, refuseContextSpecificLogin } from "./key-objects.ts";

/**
 * Private keys that are on the token already, made by something else (a
 * vendor's key ceremony, pkcs11-tool): found by label and/or CKA_ID, and
 * described from what the token says about them. Nothing here changes an
 * object: a vendor's key is used as it is or refused with the reason.
 * Every function runs synchronously on one (lookup) session.
 */

/** CKA_EC_PARAMS of the curves hsm-ca signs with: the DER of their named-curve OIDs. */
const CURVES: Record<string, { algorithm: CaKeyAlgorithm; jwkCurve: string; size: number }> = {
  "06082a8648ce3d030107": { algorithm: "ecdsa-p256", jwkCurve: "P-256", size: 32 },
  "06052b81040022": { algorithm: "ecdsa-p384", jwkCurve: "P-384", size: 48 },
};
const RSA_SIZES: Record<number, CaKeyAlgorithm> = { 2048: "rsa-2048", 3072: "rsa-3072", 4096: "rsa-4096" };
const SUPPORTED = "EC P-256, EC P-384, RSA 2048, 3072 or 4096";

/**
 * The one private key the selector names on this session's token. By label:
 * the label must name exactly one private key (and the CKA_ID, when given
 * too, must be its). By CKA_ID alone: exactly one private key has it, and
 * it must carry a label that names only it, because hsm-ca addresses keys
 * by label everywhere (a key without one is refused with how to label it,
 * never labelled here: it is the vendor's object).
 */
export function findExistingPrivateKey(session: graphene.Session, selector: KeySelector, token: string): graphene.SessionObject | undefined {
  const id = selector.id;
  if (selector.label !== undefined) {
    const found = session.find({ class: graphene.ObjectClass.PRIVATE_KEY, token: true, label: selector.label });
    if (found.length > 1) throw new HsmKeyError(`${found.length} private keys are labelled "${selector.label}" on token "${token}": which one is meant is ambiguous; give each its own label`);
    if (found.length === 0) return undefined;
    const obj = found.items(0);
    if (id !== undefined && ckaIdOf(obj) !== id) throw new HsmKeyError(`the private key labelled "${selector.label}" has CKA_ID ${ckaIdOf(obj) || "(none)"}, not ${id}`);
    return obj;
  }
  if (id === undefined) throw new HsmKeyError("name the key to adopt by its label or its CKA_ID");
  const found = session.find({ class: graphene.ObjectClass.PRIVATE_KEY, token: true, id: Buffer.from(id, "hex") });
  if (found.length > 1) {
    const labels = Array.from({ length: found.length }, (_, i) => JSON.stringify(labelOf(found.items(i)))).join(", ");
    throw new HsmKeyError(`${found.length} private keys have CKA_ID ${id} on token "${token}" (labels ${labels}): name the one to adopt by its label`);
  }
  if (found.length === 0) return undefined;
  const obj = found.items(0);
  const label = labelOf(obj);
  if (!label) {
    throw new HsmKeyError(
      `the private key with CKA_ID ${id} has no label, and hsm-ca names keys by label: label it with your HSM vendor's tool ` +
        `(or p11tool --login --set-label=NAME 'pkcs11:token=${encodeURIComponent(token)};id=${pkcs11UriId(id)};type=private') and adopt it by that label`,
    );
  }
  const sameLabel = session.find({ class: graphene.ObjectClass.PRIVATE_KEY, token: true, label }).length;
  if (sameLabel > 1) throw new HsmKeyError(`the private key with CKA_ID ${id} is labelled "${label}", but ${sameLabel} private keys share that label: give it a label of its own`);
  return obj;
}

/** What the token says about a private key: its kind, public half and attributes. Refuses kinds hsm-ca does not sign with. */
export function describeExistingKey(session: graphene.Session, obj: graphene.SessionObject): Omit<ExistingKey, "token"> {
  const label = labelOf(obj);
  const id = ckaIdOf(obj);
  const algorithm = algorithmOf(obj, label);
  refuseContextSpecificLogin(obj, label);
  const { spki, from } = publicKeyOf(session, obj, algorithm, label, id);
  return { label, id, algorithm, spki, publicKeyFrom: from, provenance: provenanceOfObject(obj) };
}

/** The attributes that say where a private key came from, whether it can leave the token, and whether it may sign. */
export function provenanceOfObject(obj: graphene.SessionObject): KeyProvenance {
  const a = obj.getAttribute({
    token: null,
    private: null,
    local: null,
    sensitive: null,
    alwaysSensitive: null,
    extractable: null,
    neverExtractable: null,
    sign: null,
  });
  return {
    token: !!a.token,
    private: !!a.private,
    local: !!a.local,
    sensitive: !!a.sensitive,
    alwaysSensitive: !!a.alwaysSensitive,
    extractable: !!a.extractable,
    neverExtractable: !!a.neverExtractable,
    sign: !!a.sign,
  };
}

function labelOf(obj: graphene.SessionObject): string {
  return (obj.getAttribute("label") as string | undefined) ?? "";
}

/** The algorithm of a key object (public or private), or undefined for a kind hsm-ca does not sign with. */
export function algorithmOfKey(obj: graphene.SessionObject, label: string): CaKeyAlgorithm | undefined {
  try {
    return algorithmOf(obj, label);
  } catch {
    return undefined;
  }
}

/** CKA_KEY_TYPE with CKA_EC_PARAMS (EC) or the modulus size (RSA) -> the CaKeyAlgorithm; anything else is refused. */
function algorithmOf(obj: graphene.SessionObject, label: string): CaKeyAlgorithm {
  const type = obj.getAttribute("keyType") as number;
  if (type === graphene.KeyType.EC) {
    // CKA_EC_PARAMS and CKA_ECDSA_PARAMS are one attribute; graphene names it by the older name.
    const params = (obj.getAttribute("paramsECDSA") as Buffer).toString("hex");
    const curve = CURVES[params];
    if (!curve) throw new HsmKeyError(`the key "${label}" is on an EC curve hsm-ca does not sign with (CKA_EC_PARAMS ${params}); it takes ${SUPPORTED}`);
    return curve.algorithm;
  }
  if (type === graphene.KeyType.RSA) {
    // CKA_MODULUS_BITS belongs to public keys; a private key has its modulus.
    const bits = bitLength(obj.getAttribute("modulus") as Buffer);
    const algorithm = RSA_SIZES[bits];
    if (!algorithm) throw new HsmKeyError(`the key "${label}" is RSA ${bits}; hsm-ca takes ${SUPPORTED}`);
    return algorithm;
  }
  const name = graphene.KeyType[type] ?? `0x${type.toString(16)}`;
  throw new HsmKeyError(`the key "${label}" is a ${name} key; hsm-ca takes ${SUPPORTED}`);
}

/**
 * The public half, SubjectPublicKeyInfo DER. From the public key object
 * with the same CKA_ID when there is one: that is where PKCS#11 keeps an EC
 * public point (a private EC key has none), and pkcs11-tool and vendor
 * tools make one beside every key pair. Without one, from the private key's
 * own attributes: CKA_MODULUS and CKA_PUBLIC_EXPONENT for RSA, or
 * CKA_EC_POINT where a token keeps it there too. Either way the ceremony
 * proves the pairing with a test signature before it trusts it.
 */
function publicKeyOf(session: graphene.Session, priv: graphene.SessionObject, algorithm: CaKeyAlgorithm, label: string, id: string): { spki: ArrayBuffer; from: ExistingKey["publicKeyFrom"] } {
  const keyType = priv.getAttribute("keyType") as number;
  const candidates: graphene.SessionObject[] = [];
  if (id) {
    const found = session.find({ class: graphene.ObjectClass.PUBLIC_KEY, token: true, id: Buffer.from(id, "hex"), keyType });
    for (let i = 0; i < found.length; i++) candidates.push(found.items(i));
  }
  let pub = candidates.length === 1 ? candidates[0] : candidates.find((c) => labelOf(c) === label);
  if (candidates.length > 1 && (!pub || candidates.filter((c) => labelOf(c) === label).length > 1)) {
    throw new HsmKeyError(`${candidates.length} public keys have CKA_ID ${id}: which one belongs to "${label}" is ambiguous`);
  }
  if (pub) return { spki: spkiOf(pub, algorithm), from: "public-key-object" };
  try {
    return { spki: spkiOf(priv, algorithm), from: "private-key" };
  } catch {
    throw new HsmKeyError(
      `the key "${label}" has no public key object with CKA_ID ${id || "(none)"}, and its public key cannot be read from the private key: ` +
        `write the public key beside it (pkcs11-tool --write-object pub.der --type pubkey --id ${id || "ID"} --label "${label}")`,
    );
  }
}

/** SPKI DER from a key object's public attributes (node's JWK import does the encoding). */
export function spkiOf(obj: graphene.SessionObject, algorithm: CaKeyAlgorithm): ArrayBuffer {
  let jwk: crypto.JsonWebKey;
  if (algorithm.startsWith("ecdsa-")) {
    const curve = Object.values(CURVES).find((c) => c.algorithm === algorithm)!;
    const point = uncompressedPoint(obj.getAttribute("pointEC") as Buffer, curve.size);
    jwk = { kty: "EC", crv: curve.jwkCurve, x: point.subarray(1, 1 + curve.size).toString("base64url"), y: point.subarray(1 + curve.size).toString("base64url") };
  } else {
    const a = obj.getAttribute({ modulus: null, publicExponent: null });
    jwk = { kty: "RSA", n: stripZeros(a.modulus as Buffer).toString("base64url"), e: stripZeros(a.publicExponent as Buffer).toString("base64url") };
  }
  const der = crypto.createPublicKey({ key: jwk, format: "jwk" }).export({ type: "spki", format: "der" });
  return der.buffer.slice(der.byteOffset, der.byteOffset + der.byteLength) as ArrayBuffer;
}

/** CKA_EC_POINT is a DER OCTET STRING around the point (PKCS#11); some tokens give the bare point. */
function uncompressedPoint(value: Buffer, size: number): Buffer {
  const bare = 1 + 2 * size;
  if (value.length === bare && value[0] === 0x04) return value;
  // 04 <len> 04 X Y, with a one-byte length (P-384: 97 bytes, still under 128).
  if (value.length === bare + 2 && value[0] === 0x04 && value[1] === bare && value[2] === 0x04) return value.subarray(2);
  throw new HsmKeyError("the key's CKA_EC_POINT is not an uncompressed point of its curve");
}

function stripZeros(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}

function bitLength(b: Buffer): number {
  const n = stripZeros(b);
  return n.length === 0 ? 0 : (n.length - 1) * 8 + (32 - Math.clz32(n[0]!));
}

/** A CKA_ID as a PKCS#11 URI's id attribute (percent-encoded bytes). */
function pkcs11UriId(hex: string): string {
  return hex.replace(/../g, (b) => `%${b.toUpperCase()}`);
}
