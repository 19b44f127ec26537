import { createRequire } from "node:module";
import os from "node:os";
import { Worker } from "node:worker_threads";
import pkcs11 from "pkcs11js";

/**
 * C_SignInit and C_Sign together on worker threads, off the event loop.
 *
 * pkcs11js runs C_Sign on a libuv thread but C_SignInit on the caller's:
 * on SoftHSM2 that is about 50 µs of key lookup per signature (measured
 * with 4 sessions signing: three quarters of the event loop at the raw
 * sign rate), which made the PKCS#11 layer the event loop's largest single
 * cost per certificate (docs/benchmarks.md, profile section). Each thread
 * loads the same module with its own pkcs11js instance: dlopen hands back
 * the library the process already initialised, and its session and object
 * handles are valid in every thread (PKCS#11 §5.1: they belong to the
 * application, not a thread). The thread never calls C_Initialize or
 * C_Finalize: the main thread's connection owns the module's life. Only
 * for modules initialised with OS locking (CKF_OS_LOCKING_OK); the others
 * sign synchronously on the event loop, never from two threads.
 */

/** What a thread runs: the whole of it, so that it needs no loader for TypeScript. */
const THREAD_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const pkcs11js = require(workerData.pkcs11js);
const lib = new pkcs11js.PKCS11();
lib.load(workerData.module);
parentPort.on("message", (m) => {
  try {
    const session = Buffer.from(m.session.buffer, m.session.byteOffset, m.session.byteLength);
    lib.C_SignInit(session, { mechanism: m.mechanism }, Buffer.from(m.key.buffer, m.key.byteOffset, m.key.byteLength));
    const signature = lib.C_Sign(session, Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength), Buffer.allocUnsafe(m.size));
    parentPort.postMessage({ id: m.id, signature });
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: { message: String(e && e.message), code: (e && e.code) || 0, method: (e && e.method) || "" } });
  }
});
`;

interface Reply {
  id: number;
  signature?: Uint8Array;
  error?: { message: string; code: number; method: string };
}

interface Waiting {
  resolve(signature: Buffer): void;
  reject(err: Error): void;
}

const PKCS11JS = createRequire(import.meta.url).resolve("pkcs11js");

export class SignThreads {
  private readonly workers: Worker[] = [];
  /** Signatures each thread is working on (or has queued). */
  private readonly load: number[] = [];
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;
  private broken: Error | undefined;

  constructor(modulePath: string, threads: number) {
    for (let i = 0; i < threads; i++) {
      const worker = new Worker(THREAD_SOURCE, {
        eval: true,
        workerData: { module: modulePath, pkcs11js: PKCS11JS },
        // A thread holds a few small buffers at a time: V8's default heaps would cost the process ~20 MiB of RSS each.
        resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16, codeRangeSizeMb: 4 },
      });
      worker.on("message", (reply: Reply) => this.settle(i, reply));
      worker.on("error", (err) => this.fail(err));
      worker.on("exit", () => this.fail(new Error("a PKCS#11 signing thread stopped")));
      // Idle threads never keep the process alive (after the listeners: adding one refs the thread
      // again); a thread with a signature to answer does (see sign and settle).
      worker.unref();
      this.workers.push(worker);
      this.load.push(0);
    }
  }

  /** False once a thread failed: callers sign on the event loop instead. */
  get healthy(): boolean {
    return this.broken === undefined;
  }

  /** C_SignInit + C_Sign on `session` (held by the caller) with the key; resolves with the signature bytes. */
  sign(session: Buffer, mechanism: number, key: Buffer, data: Buffer, size: number): Promise<Buffer> {
    if (this.broken) return Promise.reject(this.broken);
    let least = 0;
    for (let i = 1; i < this.load.length; i++) if (this.load[i]! < this.load[least]!) least = i;
    const id = this.nextId++;
    if (this.load[least]!++ === 0) this.workers[least]!.ref();
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      // Copies of exactly these bytes: a Buffer from Node's pool would send its whole 8 KiB slab.
      this.workers[least]!.postMessage({ id, session: Uint8Array.from(session), mechanism, key: Uint8Array.from(key), data: Uint8Array.from(data), size });
    });
  }

  private settle(thread: number, reply: Reply): void {
    if (--this.load[thread]! === 0) this.workers[thread]!.unref();
    const w = this.waiting.get(reply.id);
    if (!w) return;
    this.waiting.delete(reply.id);
    if (reply.signature) w.resolve(Buffer.from(reply.signature.buffer, reply.signature.byteOffset, reply.signature.byteLength));
    else w.reject(new pkcs11.Pkcs11Error(reply.error!.message, reply.error!.code, reply.error!.method));
  }

  private fail(err: Error): void {
    this.broken ??= err;
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }
}

const byModule = new Map<string, SignThreads>();

/**
 * The process's signing threads for a module: one set per module path,
 * made on first use, as many threads as cores (at most 4).
 */
export function signThreadsFor(modulePath: string): SignThreads {
  let threads = byModule.get(modulePath);
  if (!threads) byModule.set(modulePath, (threads = new SignThreads(modulePath, Math.max(1, Math.min(4, os.availableParallelism())))));
  return threads;
}
