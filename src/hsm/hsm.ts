import * as graphene from "graphene-pk11";
// Default import: pkcs11js is CommonJS and its constants are not visible as ESM named exports.
import pkcs11 from "pkcs11js";
import { HsmConnection } from "./connection.ts";
import { readDataObjects, replaceDataObject } from "./data-objects.ts";
import { failureReason, HsmKeyError, KeyNotFoundError, pkcs11Reason, PoolRetiredError } from "./errors.ts";
import { HsmEvents, type AvailabilityListener, type KeyEvents, type KeyUseEvent, type KeyUseListener } from "./events.ts";
import type { HsmConfig } from "./hsm-config.ts";
import { KEY_ALGORITHM_SPECS, type CaKeyAlgorithm } from "./key-algorithms.ts";
import { unsupportedReason } from "./capabilities.ts";
import { algorithmOfKey, describeExistingKey, findExistingPrivateKey, provenanceOfObject, spkiOf } from "./existing-keys.ts";
import { generateKeyPair } from "./key-generation.ts";
import type { ExistingKey, GeneratedKey, KeyManager, KeyManagerStatus, KeyProvenance, KeySelector, SecretSealer, Signer, TokenDataObjects } from "./key-manager.ts";
import { ckaIdOf, findObject, privateKeyOn, storageId } from "./key-objects.ts";
import { openWithSecretKey, sealWithSecretKey } from "./secret-key.ts";
import type { PooledSession, SessionPool } from "./session-pool.ts";
import type { SigningCrypto } from "./signing-crypto.ts";

/**
 * The key manager on a PKCS#11 HSM: CA keys addressed by their CKA_LABEL
 * on the token(s) of one connection (src/hsm/connection.ts). Callers get
 * signers and WebCrypto keys, never PKCS#11 handles. Every use of a key is
 * told to the key-use listeners (src/hsm/events.ts).
 *
 * Only the composition root (src/service.ts) and the CLI's own process
 * construct it; everything else is handed the KeyManager interface (or a
 * narrower part: SecretSealer, TokenDataObjects, KeyEvents, the status).
 */
export class Hsm implements KeyManager, SecretSealer, TokenDataObjects, KeyEvents {
  private readonly events = new HsmEvents();
  private readonly connection: HsmConnection;
  /** CKA_ID (hex) by label, for key-use events: labels are never reused. */
  private readonly keyIds = new Map<string, string>();
  readonly status: KeyManagerStatus;

  private constructor(config: HsmConfig, dataDir: string) {
    this.connection = HsmConnection.open(config, dataDir, this.events);
    this.status = hsmStatus(this.connection);
  }

  static open(config: HsmConfig, dataDir: string): Hsm {
    return new Hsm(config, dataDir);
  }

  /** Set on the embedded default's first start: the PIN files were just generated. */
  get pinsGenerated(): boolean {
    return this.connection.pinsGenerated;
  }

  onKeyUse(listener: KeyUseListener): () => void {
    return this.events.onKeyUse(listener);
  }

  onAvailability(listener: AvailabilityListener): () => void {
    return this.events.onAvailability(listener);
  }

  rereadKeys(): Promise<void> {
    return this.connection.rereadObjects();
  }

  hasKey(label: string): boolean {
    return this.privateKeyObject(label) !== undefined;
  }

  /**
   * The private key object with this label (on the root token first). When
   * there is none, a module that reads its object store only at C_Initialize
   * re-reads it in the background: the next lookup sees a key another
   * process made since (hasKey is synchronous and cannot wait for that).
   */
  private privateKeyObject(label: string): { obj: graphene.SessionObject; pool: SessionPool } | undefined {
    const c = this.connection;
    const pool = c.poolFor(label);
    const obj = c.findOn(pool, graphene.ObjectClass.PRIVATE_KEY, label);
    if (obj) return { obj, pool };
    c.refreshObjects();
    return undefined;
  }

  async generateKey(label: string, algorithm: CaKeyAlgorithm, on: "issuing" | "root" = "issuing"): Promise<GeneratedKey> {
    if (this.hasKey(label)) throw new HsmKeyError(`a key labelled "${label}" already exists on the token`);
    const unsupported = this.unsupportedReason(algorithm);
    if (unsupported) throw new HsmKeyError(unsupported);
    const synchronous = !this.connection.osLocking;
    return this.keyOperation(label, "generate", () => this.connection.poolForNewKey(on), async ({ session }) => {
      const pair = await generateKeyPair(session, label, algorithm, synchronous);
      const spki = spkiOf(pair.publicKey, algorithm);
      const id = ckaIdOf(pair.privateKey);
      this.keyIds.set(label, id);
      return { label, id, algorithm, spki };
    });
  }

  /** Why the token cannot make or sign with keys of this algorithm (a mechanism it lacks), or undefined when it can. */
  unsupportedReason(algorithm: CaKeyAlgorithm): string | undefined {
    return unsupportedReason(this.connection.capabilities, algorithm);
  }

  async findExistingKey(selector: KeySelector, on: "issuing" | "root" = "issuing"): Promise<ExistingKey> {
    const c = this.connection;
    const pool = c.poolForNewKey(on);
    const token = on === "root" ? c.rootToken.label : c.tokenLabel;
    const obj = c.onLookup(pool, (s) => findExistingPrivateKey(s, selector, token));
    if (!obj) {
      // "Not there" is believed only if the token still answers.
      c.requireAnswer(pool);
      const what = [selector.label !== undefined ? `labelled "${selector.label}"` : "", selector.id !== undefined ? `with CKA_ID ${selector.id}` : ""].filter(Boolean).join(" ");
      throw new HsmKeyError(`no private key ${what} on token "${token}"`);
    }
    const key = c.onLookup(pool, (s) => describeExistingKey(s, obj));
    // Signers find keys by label, on the root token first: the label must lead there to this key.
    if (c.poolFor(key.label) !== pool) throw new HsmKeyError(`a private key labelled "${key.label}" is on the root token too: give the key to adopt a label of its own`);
    return { ...key, token };
  }

  /**
   * Seals a small secret under the named AES-256 secret key on the issuing
   * token (AES-GCM, src/hsm/secret-key.ts), generating the key there on
   * first use. `aad` is bound to the result: decrypt needs the same.
   * Callers on several replicas serialise the first use themselves.
   */
  async encrypt(label: string, plaintext: Buffer, aad: Buffer): Promise<Buffer> {
    return this.keyOperation(label, "encrypt", () => this.connection.current(), async ({ session }) => {
      const started = performance.now();
      const { sealed, keyId, created } = sealWithSecretKey(session, label, plaintext, aad);
      this.keyIds.set(label, keyId);
      if (created) this.events.keyUsed({ label, operation: "generate", id: keyId, ok: true, ms: performance.now() - started });
      return sealed;
    });
  }

  async decrypt(label: string, sealed: Buffer, aad: Buffer): Promise<Buffer> {
    return this.keyOperation(label, "decrypt", () => this.connection.current(), async ({ session }) => {
      const { plaintext, keyId } = openWithSecretKey(session, label, sealed, aad);
      this.keyIds.set(label, keyId);
      return plaintext;
    });
  }

  async publicKeySpki(label: string, algorithm: CaKeyAlgorithm): Promise<ArrayBuffer> {
    return this.lookingAgain(
      () => this.connection.poolFor(label),
      async (pool) => {
        try {
          return await pool.use(async ({ session }) => {
            const obj = findObject(session, graphene.ObjectClass.PUBLIC_KEY, label);
            // From the key's own attributes: its algorithm is the key's, whatever the caller expected.
            if (obj) return spkiOf(obj, algorithmOfKey(obj, label) ?? algorithm);
            // An adopted key's public half may carry another label (or be only in the private key's attributes).
            const priv = findObject(session, graphene.ObjectClass.PRIVATE_KEY, label);
            if (!priv) throw new KeyNotFoundError(`no public key labelled "${label}" on the token`);
            return describeExistingKey(session, priv).spki;
          });
        } catch (err) {
          throw this.connection.failure(err, pool);
        }
      },
    );
  }

  keyId(label: string): string {
    const found = this.privateKeyObject(label);
    if (!found) throw new KeyNotFoundError(`no private key labelled "${label}" on the token`);
    return ckaIdOf(found.obj);
  }

  /** The values of the private data objects with this label on the (issuing) token; none when there is none. */
  readDataObjects(label: string): Buffer[] {
    const pool = this.connection.current();
    const values = this.connection.onLookup(pool, (s) => readDataObjects(s, label));
    // "None" is believed only if the token still answers.
    if (values.length === 0) this.connection.requireAnswer(pool);
    return values;
  }

  /** Stores value as the private data object with this label on the (issuing) token, replacing what was there. */
  writeDataObject(label: string, value: Buffer): void {
    const pool = this.connection.current();
    this.connection.onLookup(pool, (s) => replaceDataObject(s, label, value));
  }

  /**
   * Lends a session's WebCrypto provider and the CA private key on it for
   * the duration of fn. Every CA signature goes through here. Fails fast
   * with HsmUnavailableError while the HSM is away, and with HsmBusyError
   * when every session is lent and the queue is full.
   */
  async withSigningKey<T>(label: string, algorithm: CaKeyAlgorithm, fn: (key: CryptoKey, crypto: SigningCrypto) => Promise<T>): Promise<T> {
    return this.keyOperation(label, "sign", () => this.connection.poolFor(label), async (member) => {
      try {
        return await fn(privateKeyOn(member, label, algorithm, this.keyIds), member.signing);
      } catch (err) {
        // The cached handle may name a key destroyed elsewhere: look it up again next time.
        if (err instanceof pkcs11.Pkcs11Error && (err.code === pkcs11.CKR_OBJECT_HANDLE_INVALID || err.code === pkcs11.CKR_KEY_HANDLE_INVALID)) {
          member.keys.delete(label);
        }
        throw err;
      }
    });
  }

  /**
   * Destroys a key pair on the token (C_DestroyObject). Callers decide that
   * it is no longer needed; this only makes sure no session keeps using it.
   */
  destroyKey(label: string): boolean {
    const c = this.connection;
    const pool = c.poolFor(label);
    const started = performance.now();
    let id = this.keyIds.get(label);
    try {
      pool.forEach((m) => m.keys.delete(label));
      let destroyed = false;
      for (const cls of [graphene.ObjectClass.PRIVATE_KEY, graphene.ObjectClass.PUBLIC_KEY]) {
        const obj = c.findOn(pool, cls, label);
        if (obj) {
          id ??= c.onLookup(pool, () => ckaIdOf(obj));
          c.onLookup(pool, () => destroyObject(obj, label));
          destroyed = true;
        }
      }
      this.keyIds.delete(label);
      this.events.keyUsed({ label, operation: "destroy", id, ok: true, ms: performance.now() - started });
      return destroyed;
    } catch (err) {
      this.events.keyUsed({ label, operation: "destroy", id, ok: false, ms: performance.now() - started, error: failureReason(err) });
      throw err;
    }
  }

  signer(label: string, algorithm: CaKeyAlgorithm): Signer {
    return {
      signingAlgorithm: KEY_ALGORITHM_SPECS[algorithm].signParams,
      use: (fn) => this.withSigningKey(label, algorithm, fn),
    };
  }

  /**
   * Lets go of the sessions (each lent one when it is given back) and of the
   * module once they are all back.
   */
  close(): void {
    this.connection.close();
  }

  /**
   * Runs attempt on the pool poolOf gives; when it fails because the key is
   * not found or the pool was retired under it, and the connection says the
   * token's objects or sessions are (now) new (lookAgainAfter: a key another
   * process made, on tpm2-pkcs11), once more on the pool current then.
   * Nothing extra on the way of a call that succeeds.
   */
  private async lookingAgain<T>(poolOf: () => SessionPool, attempt: (pool: SessionPool, last: boolean) => Promise<T>): Promise<T> {
    const pool = poolOf();
    try {
      return await attempt(pool, false);
    } catch (err) {
      const missing = err instanceof KeyNotFoundError;
      if (!(missing || err instanceof PoolRetiredError) || !(await this.connection.lookAgainAfter(pool, missing))) throw err;
      return attempt(poolOf(), true);
    }
  }

  /**
   * Runs fn on a lent session and tells the key-use listeners how it went.
   * A first attempt that did not find the key or whose pool was retired
   * under it is tried once more when the connection says so (see
   * lookingAgain; its failure is told only when there is no second attempt).
   * A call that succeeds takes no extra step.
   */
  private async keyOperation<T>(label: string, operation: KeyUseEvent["operation"], poolOf: () => SessionPool, fn: (member: PooledSession) => Promise<T>): Promise<T> {
    const pool = poolOf();
    try {
      return await this.keyOperationOn(label, operation, pool, fn, true);
    } catch (err) {
      const missing = err instanceof KeyNotFoundError;
      if ((missing || err instanceof PoolRetiredError) && (await this.connection.lookAgainAfter(pool, missing))) {
        return this.keyOperationOn(label, operation, poolOf(), fn, false);
      }
      if (missing) this.events.keyUsed({ label, operation, ok: false, ms: 0, error: failureReason(err) });
      throw err;
    }
  }

  private async keyOperationOn<T>(label: string, operation: KeyUseEvent["operation"], pool: SessionPool, fn: (member: PooledSession) => Promise<T>, firstAttempt: boolean): Promise<T> {
    let started: number | undefined;
    try {
      const result = await pool.use((member) => {
        started = performance.now();
        return fn(member);
      });
      this.events.keyUsed({ label, operation, id: this.keyIds.get(label), ok: true, ms: performance.now() - started! });
      return result;
    } catch (err) {
      const error = this.connection.failure(err, pool);
      // A call refused before it reached the token (unavailable, queue full) used no key.
      if (started !== undefined && !(firstAttempt && error instanceof KeyNotFoundError)) this.events.keyUsed({ label, operation, id: this.keyIds.get(label), ok: false, ms: performance.now() - started, error: failureReason(err) });
      throw error;
    }
  }
}

/**
 * C_DestroyObject, with a clear refusal from modules that do not destroy
 * objects (some HSMs keep keys until an officer deletes them, or allow no
 * deletion by the user role).
 */
/** PKCS#11 3.0's code for an action the token's policy forbids (pkcs11js does not name it). */
const CKR_ACTION_PROHIBITED = 0x1b;

function destroyObject(obj: graphene.SessionObject, label: string): void {
  try {
    obj.destroy();
  } catch (err) {
    if (err instanceof pkcs11.Pkcs11Error && (err.code === pkcs11.CKR_FUNCTION_NOT_SUPPORTED || err.code === CKR_ACTION_PROHIBITED)) {
      throw new HsmKeyError(`the HSM does not let hsm-ca destroy the key "${label}" (${pkcs11Reason(err)}): delete it with the HSM vendor's tool`);
    }
    throw err;
  }
}

/** The read-only view: a separate object, so that whoever holds it can reach no key operation. */
function hsmStatus(c: HsmConnection): KeyManagerStatus {
  return {
    get tokenLabel() {
      return c.tokenLabel;
    },
    get rootToken() {
      return c.rootToken;
    },
    get available() {
      return c.available;
    },
    get poolStats() {
      return c.poolStats;
    },
    health: () => c.health(),
    provenance: (label) => provenanceOf(c, label),
  };
}

function provenanceOf(c: HsmConnection, label: string): KeyProvenance {
  const pool = c.poolFor(label);
  const obj = c.findOn(pool, graphene.ObjectClass.PRIVATE_KEY, label);
  if (!obj) {
    // As hasKey: a module that reads its objects only at C_Initialize re-reads them for the next lookup.
    c.refreshObjects();
    throw new KeyNotFoundError(`no private key labelled "${label}" on the token`);
  }
  return c.onLookup(pool, () => provenanceOfObject(obj));
}
