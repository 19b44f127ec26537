import * as graphene from "graphene-pk11";
// Default import: pkcs11js is CommonJS and its constants are not visible as ESM named exports.
import pkcs11 from "pkcs11js";
import type { Crypto } from "node-webcrypto-p11";
import type { CaSigner } from "../ca/signer.ts";
import type { HsmConfig } from "../config.ts";
import { ensureEmbeddedTokenInitialised, prepareEmbeddedToken } from "./embedded-softhsm.ts";
import { KEY_ALGORITHM_SPECS, type CaKeyAlgorithm } from "./key-algorithms.ts";
import { findSlotByTokenLabel, HsmUnavailableError, loadModule, unloadModule } from "./module.ts";
import { readPin } from "./pin.ts";
import { SessionPool, type PooledSession } from "./session-pool.ts";

export { HsmUnavailableError } from "./module.ts";

/** Attributes that say where a key came from and whether it can leave the token. */
export interface KeyProvenance {
  token: boolean;
  local: boolean;
  sensitive: boolean;
  alwaysSensitive: boolean;
  extractable: boolean;
  neverExtractable: boolean;
}

export interface GeneratedKey {
  label: string;
  /** CKA_ID, hex. */
  id: string;
  algorithm: CaKeyAlgorithm;
  /** SubjectPublicKeyInfo, DER. */
  spki: ArrayBuffer;
}

export class HsmKeyError extends Error {}

/** One use of a key on the HSM, for the audit log. */
export interface KeyUseEvent {
  label: string;
  operation: "sign" | "generate" | "destroy";
  ok: boolean;
  ms: number;
  /** The PKCS#11 reason or message when it failed. */
  error?: string;
}

export type KeyUseListener = (event: KeyUseEvent) => void;

/** PKCS#11 session state "read/write, user logged in" (pkcs11js does not export CKS_*). */
const CKS_RW_USER_FUNCTIONS = 3;

/**
 * The only door to the HSM: a pool of logged-in sessions on the token found
 * by label, and CA keys addressed by their CKA_LABEL. Callers get WebCrypto
 * keys and providers, never PKCS#11 handles.
 */
export class Hsm {
  private constructor(
    private readonly config: HsmConfig,
    private readonly pool: SessionPool,
    /** Set on the embedded default's first start: the PIN files were just generated. */
    readonly pinsGenerated: boolean,
    /** The separate root token (an offline root), when configured and present. */
    private readonly rootPool?: SessionPool,
  ) {}

  static open(config: HsmConfig, dataDir: string): Hsm {
    let pinsGenerated = false;
    if (config.embedded) pinsGenerated = prepareEmbeddedToken(dataDir).pinsGenerated;
    const mod = loadModule(config.module);
    let pool: SessionPool | undefined;
    let rootPool: SessionPool | undefined;
    try {
      if (config.embedded) ensureEmbeddedTokenInitialised(mod, dataDir, config.tokenLabel);
      const slot = findSlotByTokenLabel(mod, config.tokenLabel);
      if (!slot) throw new HsmUnavailableError(`no token labelled "${config.tokenLabel}" in ${config.module}`);
      pool = new SessionPool(slot, config.sessions);
      login(pool.lookup, readPin(config.pinSource));
      if (config.rootToken) {
        if (config.embedded) ensureEmbeddedTokenInitialised(mod, dataDir, config.rootToken.label);
        // An offline root is present only for ceremonies: its absence is not an error here.
        const rootSlot = findSlotByTokenLabel(mod, config.rootToken.label);
        if (rootSlot) {
          rootPool = new SessionPool(rootSlot, 1);
          login(rootPool.lookup, readPin(config.rootToken.pinSource));
        }
      }
    } catch (err) {
      rootPool?.close();
      pool?.close();
      unloadModule(config.module);
      throw err;
    }
    return new Hsm(config, pool, pinsGenerated, rootPool);
  }

  /** Where root keys are made: the separate root token when configured, else the one token. */
  get rootToken(): { label: string; present: boolean } {
    if (!this.config.rootToken) return { label: this.config.tokenLabel, present: true };
    return { label: this.config.rootToken.label, present: this.rootPool !== undefined };
  }

  /** The pool of the token that holds this key (the root token's first). */
  private poolFor(label: string): SessionPool {
    if (this.rootPool && findObject(this.rootPool.lookup, graphene.ObjectClass.PRIVATE_KEY, label)) return this.rootPool;
    return this.pool;
  }

  get tokenLabel(): string {
    return this.config.tokenLabel;
  }

  get poolStats() {
    return { size: this.pool.size, inUse: this.pool.inUse, waiting: this.pool.waiting };
  }

  hasKey(label: string): boolean {
    return findObject(this.poolFor(label).lookup, graphene.ObjectClass.PRIVATE_KEY, label) !== undefined;
  }

  /**
   * Generates a CA key pair on the token: token object, sensitive, never
   * extractable. Refuses to create a second key under an existing label.
   */
  async generateKey(label: string, algorithm: CaKeyAlgorithm, on: "issuing" | "root" = "issuing"): Promise<GeneratedKey> {
    if (this.hasKey(label)) throw new HsmKeyError(`a key labelled "${label}" already exists on the token`);
    const spec = KEY_ALGORITHM_SPECS[algorithm];
    let pool = this.pool;
    if (on === "root" && this.config.rootToken) {
      if (!this.rootPool) throw new HsmKeyError(`the root token "${this.config.rootToken.label}" is not present: insert it for the ceremony`);
      pool = this.rootPool;
    }
    return pool.use(async ({ crypto }) => {
      // token/sensitive/label are node-webcrypto-p11's PKCS#11 extensions to the algorithm.
      const params: EcKeyGenParams | RsaHashedKeyGenParams = Object.assign({}, spec.keyParams, { token: true, sensitive: true, label });
      const pair = (await crypto.subtle.generateKey(
        params,
        false,
        ["sign", "verify"],
      )) as CryptoKeyPair;
      const spki = await crypto.subtle.exportKey("spki", pair.publicKey);
      const id = findObject(crypto.session, graphene.ObjectClass.PRIVATE_KEY, label)!.getAttribute("id") as Buffer;
      return { label, id: id.toString("hex"), algorithm, spki };
    });
  }

  /** The public half of a CA key, SubjectPublicKeyInfo DER. */
  async publicKeySpki(label: string, algorithm: CaKeyAlgorithm): Promise<ArrayBuffer> {
    return this.poolFor(label).use(async ({ crypto, session }) => {
      const obj = findObject(session, graphene.ObjectClass.PUBLIC_KEY, label);
      if (!obj) throw new HsmKeyError(`no public key labelled "${label}" on the token`);
      const key = await crypto.keyStorage.getItem(storageId("public", obj), KEY_ALGORITHM_SPECS[algorithm].keyParams, true, ["verify"]);
      return crypto.subtle.exportKey("spki", key);
    });
  }

  keyId(label: string): string {
    const obj = findObject(this.poolFor(label).lookup, graphene.ObjectClass.PRIVATE_KEY, label);
    if (!obj) throw new HsmKeyError(`no private key labelled "${label}" on the token`);
    return (obj.getAttribute("id") as Buffer).toString("hex");
  }

  provenance(label: string): KeyProvenance {
    const obj = findObject(this.poolFor(label).lookup, graphene.ObjectClass.PRIVATE_KEY, label);
    if (!obj) throw new HsmKeyError(`no private key labelled "${label}" on the token`);
    const a = obj.getAttribute({
      token: null,
      local: null,
      sensitive: null,
      alwaysSensitive: null,
      extractable: null,
      neverExtractable: null,
    });
    return {
      token: !!a.token,
      local: !!a.local,
      sensitive: !!a.sensitive,
      alwaysSensitive: !!a.alwaysSensitive,
      extractable: !!a.extractable,
      neverExtractable: !!a.neverExtractable,
    };
  }

  /**
   * Lends a session's WebCrypto provider and the CA private key on it for
   * the duration of fn. Every CA signature goes through here.
   */
  async withSigningKey<T>(
    label: string,
    algorithm: CaKeyAlgorithm,
    fn: (key: CryptoKey, crypto: Crypto) => Promise<T>,
  ): Promise<T> {
    return this.poolFor(label).use(async (member) => fn(await privateKeyOn(member, label, algorithm), member.crypto));
  }

  /**
   * Destroys a key pair on the token (C_DestroyObject). Callers decide that
   * it is no longer needed; this only makes sure no session keeps using it.
   */
  destroyKey(label: string): boolean {
    const pool = this.poolFor(label);
    pool.forEach((m) => m.keys.delete(label));
    let destroyed = false;
    for (const cls of [graphene.ObjectClass.PRIVATE_KEY, graphene.ObjectClass.PUBLIC_KEY]) {
      const obj = findObject(pool.lookup, cls, label);
      if (obj) {
        obj.destroy();
        destroyed = true;
      }
    }
    return destroyed;
  }

  /** The CA's view of a key on this HSM. */
  signer(label: string, algorithm: CaKeyAlgorithm): CaSigner {
    return {
      signingAlgorithm: KEY_ALGORITHM_SPECS[algorithm].signParams,
      use: (fn) => this.withSigningKey(label, algorithm, fn),
    };
  }

  /**
   * Asks the token something cheap: is the lookup session still open and
   * logged in? False when the token is gone, sessions were closed or the
   * login was lost.
   */
  health(): { ok: true } | { ok: false; detail: string } {
    try {
      const session = this.pool.lookup;
      const info = session.lib.C_GetSessionInfo(session.handle);
      if (info.state !== CKS_RW_USER_FUNCTIONS) return { ok: false, detail: "the session is not logged in" };
      return { ok: true };
    } catch (err) {
      return { ok: false, detail: pkcs11Reason(err) };
    }
  }

  close(): void {
    this.rootPool?.close();
    this.pool.close();
    unloadModule(this.config.module);
  }
}

async function privateKeyOn(member: PooledSession, label: string, algorithm: CaKeyAlgorithm): Promise<CryptoKey> {
  const cached = member.keys.get(label);
  if (cached) return cached;
  const obj = findObject(member.session, graphene.ObjectClass.PRIVATE_KEY, label);
  if (!obj) throw new HsmKeyError(`no private key labelled "${label}" on the token`);
  const key = await member.crypto.keyStorage.getItem(storageId("private", obj), KEY_ALGORITHM_SPECS[algorithm].keyParams, false, ["sign"]);
  member.keys.set(label, key);
  return key;
}

function findObject(session: graphene.Session, cls: graphene.ObjectClass, label: string): graphene.SessionObject | undefined {
  const found = session.find({ class: cls, label, token: true });
  if (found.length > 1) throw new HsmKeyError(`${found.length} objects share the label "${label}" on the token`);
  return found.length === 1 ? found.items(0) : undefined;
}

/** node-webcrypto-p11's key storage index: class, handle and CKA_ID. */
function storageId(kind: "private" | "public", obj: graphene.SessionObject): string {
  return `${kind}-${obj.handle.toString("hex")}-${(obj.getAttribute("id") as Buffer).toString("hex")}`;
}

function login(session: graphene.Session, pin: string): void {
  try {
    session.login(pin, graphene.UserType.USER);
  } catch (err) {
    if (err instanceof pkcs11.Pkcs11Error && err.code === pkcs11.CKR_USER_ALREADY_LOGGED_IN) return;
    throw new HsmUnavailableError(`HSM login failed: ${pkcs11Reason(err)}`);
  }
}

/** The PKCS#11 return code's name only: never anything that could carry a secret. */
export function pkcs11Reason(err: unknown): string {
  if (err instanceof pkcs11.Pkcs11Error) {
    const name = Object.entries(pkcs11).find(([k, v]) => k.startsWith("CKR_") && v === err.code)?.[0];
    return name ?? `PKCS#11 error 0x${err.code.toString(16)}`;
  }
  return err instanceof Error ? err.message : String(err);
}
