import crypto from "node:crypto";
import * as graphene from "graphene-pk11";
import pkcs11 from "pkcs11js";
import type { HsmConfig } from "../../src/config.ts";
import { acquireModule, findSlotByTokenLabel, releaseModule, type ModuleUser } from "../../src/hsm/module.ts";

/**
 * The ceiling every HSM figure is compared with: raw pkcs11js C_SignInit +
 * asynchronous C_Sign (CKM_ECDSA over a 32-byte digest) on sessions of our
 * own, one loop per session, in the calling process. The token must already
 * be logged in by an Hsm in this process (one login covers the application).
 */
export class RawSigner {
  private readonly user: ModuleUser = { moduleReinitialised: () => {} };
  private readonly shared;
  readonly sessions: graphene.Session[] = [];
  private readonly keyHandle: Buffer;
  private readonly digest = crypto.createHash("sha256").update("bench").digest();

  constructor(config: HsmConfig, keyLabel: string, sessions: number) {
    this.shared = acquireModule(config.module, this.user);
    const slot = findSlotByTokenLabel(this.shared.mod, config.tokenLabel);
    if (!slot) throw new Error(`no token ${config.tokenLabel}`);
    for (let i = 0; i < sessions; i++) this.sessions.push(slot.open(graphene.SessionFlag.SERIAL_SESSION | graphene.SessionFlag.RW_SESSION));
    const found = this.sessions[0]!.find({ class: graphene.ObjectClass.PRIVATE_KEY, label: keyLabel });
    if (found.length !== 1) throw new Error(`no private key ${keyLabel}`);
    this.keyHandle = found.items(0).handle;
  }

  sign(i: number): Promise<Buffer> {
    const s = this.sessions[i]!;
    return new Promise((resolve, reject) => {
      s.lib.C_SignInit(s.handle, { mechanism: pkcs11.CKM_ECDSA }, this.keyHandle);
      s.lib.C_Sign(s.handle, this.digest, Buffer.allocUnsafe(64), (err, sig) => (err ? reject(err) : resolve(sig)));
    });
  }

  /** Signatures per second over ms, one loop per session. */
  rate(ms: number): Promise<number> {
    return callsPerSecond(ms, this.sessions.length, (i) => this.sign(i));
  }

  close(): void {
    for (const s of this.sessions) s.close();
    releaseModule(this.shared, this.user);
  }
}

/** Calls fn from `callers` concurrent loops for ms; returns completed calls per second. */
export async function callsPerSecond(ms: number, callers: number, fn: (caller: number) => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  const end = t0 + ms;
  let done = 0;
  await Promise.all(
    Array.from({ length: callers }, async (_, c) => {
      while (performance.now() < end) {
        await fn(c);
        done++;
      }
    }),
  );
  return done / ((performance.now() - t0) / 1000);
}
