/**
 * Mutation fuzzing for the hostile-input tests: a seeded PRNG (the same
 * inputs on every run), mutators that start from real valid inputs (bit
 * flips, byte insertions and deletions, truncations, DER length-field
 * tampering, splices with other samples, chunk duplication) plus pure random
 * bytes, and a small keep-alive HTTP(S) client with a per-request deadline.
 * Deliberately independent of src/.
 */
import http from "node:http";
import https from "node:https";

/** xorshift128+-like generator seeded by splitmix32: fast, deterministic, good enough for fuzzing. */
export class Rng {
  private s: Uint32Array;
  constructor(seed: number) {
    let x = seed >>> 0;
    const split = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s = new Uint32Array([split(), split(), split(), split()]);
  }
  /** xoshiro128** */
  u32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2] = s[2]! ^ s[0]!;
    s[3] = s[3]! ^ s[1]!;
    s[1] = s[1]! ^ s[2]!;
    s[0] = s[0]! ^ s[3]!;
    s[2] = s[2]! ^ t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }
  /** 0 <= n < max */
  int(max: number): number {
    return max <= 1 ? 0 : this.u32() % max;
  }
  range(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** Offsets of the length octets of every TLV in a DER tree (constructed values are walked into). */
export function derLengthOffsets(der: Uint8Array): number[] {
  const out: number[] = [];
  const walk = (start: number, end: number, depth: number) => {
    let i = start;
    while (i < end && depth < 32) {
      const tag = der[i++]!;
      if ((tag & 0x1f) === 0x1f) while (i < end && der[i++]! & 0x80);
      if (i >= end) return;
      out.push(i);
      let len = der[i++]!;
      if (len & 0x80) {
        const n = len & 0x7f;
        if (n === 0 || n > 4 || i + n > end) return;
        len = 0;
        for (let k = 0; k < n; k++) len = len * 256 + der[i++]!;
      }
      const contentEnd = i + len;
      if (contentEnd > end) return;
      if (tag & 0x20) walk(i, contentEnd, depth + 1);
      i = contentEnd;
    }
  };
  walk(0, der.length, 0);
  return out;
}

const INTERESTING = [0x00, 0x01, 0x02, 0x7f, 0x80, 0x81, 0x82, 0x84, 0xfe, 0xff, 0x30, 0x31, 0xa0, 0x04, 0x05, 0x06];

export const MUTATIONS = ["bitflip", "interesting", "insert", "delete", "truncate", "length", "splice", "duplicate", "swap", "random"] as const;
export type Mutation = (typeof MUTATIONS)[number];

/** One mutation of `input`; `pool` holds other valid samples for splices. */
export function mutateOnce(input: Uint8Array, rng: Rng, how: Mutation, pool: readonly Uint8Array[] = []): Uint8Array {
  const b = Uint8Array.from(input);
  const n = b.length;
  switch (how) {
    case "bitflip": {
      if (!n) return b;
      for (let k = rng.range(1, 4); k > 0; k--) {
        const at = rng.int(n);
        b[at] = b[at]! ^ (1 << rng.int(8));
      }
      return b;
    }
    case "interesting": {
      if (!n) return b;
      b[rng.int(n)] = rng.pick(INTERESTING);
      return b;
    }
    case "insert": {
      const at = rng.int(n + 1);
      const ins = rng.chance(0.3) ? Uint8Array.of(rng.pick(INTERESTING)) : rng.bytes(rng.range(1, 16));
      return concat(b.subarray(0, at), ins, b.subarray(at));
    }
    case "delete": {
      if (!n) return b;
      const at = rng.int(n);
      return concat(b.subarray(0, at), b.subarray(Math.min(n, at + rng.range(1, 16))));
    }
    case "truncate":
      return b.subarray(0, rng.int(n));
    case "length": {
      const offsets = derLengthOffsets(b);
      if (!offsets.length) return mutateOnce(b, rng, "interesting");
      const at = rng.pick(offsets);
      const old = b[at]!;
      const choices: Uint8Array[] = [
        Uint8Array.of(0x00),
        Uint8Array.of(0x7f),
        Uint8Array.of(0x80), // indefinite: not DER
        Uint8Array.of((old + 1) & 0x7f),
        Uint8Array.of((old - 1) & 0x7f),
        Uint8Array.of(0x81, rng.u32() & 0xff),
        Uint8Array.of(0x82, 0xff, 0xff),
        Uint8Array.of(0x84, 0xff, 0xff, 0xff, 0xff),
        Uint8Array.of(0x84, 0x7f, 0xff, 0xff, 0xff),
        Uint8Array.of(0x89, 1, 2, 3, 4, 5, 6, 7, 8, 9),
        Uint8Array.of(0x81, old & 0x7f), // non-minimal long form
        Uint8Array.of(rng.u32() & 0xff),
      ];
      // Replace the whole length field (short or long form) with the new one.
      const width = old & 0x80 ? 1 + (old & 0x7f) : 1;
      return concat(b.subarray(0, at), rng.pick(choices), b.subarray(Math.min(n, at + width)));
    }
    case "splice": {
      const other = pool.length ? rng.pick(pool) : b;
      return concat(b.subarray(0, rng.int(n + 1)), other.subarray(rng.int(other.length + 1)));
    }
    case "duplicate": {
      if (!n) return b;
      const from = rng.int(n);
      const chunk = b.subarray(from, Math.min(n, from + rng.range(1, 64)));
      const at = rng.int(n + 1);
      return concat(b.subarray(0, at), chunk, b.subarray(at));
    }
    case "swap": {
      if (n < 4) return b;
      const i = rng.int(n);
      const j = rng.int(n);
      const t = b[i]!;
      b[i] = b[j]!;
      b[j] = t;
      return b;
    }
    case "random":
      return rng.bytes(rng.int(Math.max(8, n * 2)));
  }
}

/** One to three stacked mutations (pure random never stacks); returns what was done. */
export function mutate(input: Uint8Array, rng: Rng, pool: readonly Uint8Array[] = []): { bytes: Uint8Array; how: Mutation[] } {
  const first = rng.pick(MUTATIONS);
  if (first === "random") return { bytes: mutateOnce(input, rng, "random"), how: ["random"] };
  let bytes = mutateOnce(input, rng, first, pool);
  const how: Mutation[] = [first];
  for (let k = rng.chance(0.35) ? rng.range(1, 2) : 0; k > 0; k--) {
    const next = rng.pick(MUTATIONS.filter((m) => m !== "random"));
    bytes = mutateOnce(bytes, rng, next, pool);
    how.push(next);
  }
  return { bytes, how };
}

const TEXT_NOISE = ["\r\n", "\n", " ", "\t", "=", "==", "-", "-----", "\u0000", "é", "\uFFFD", "+", "/", "_", "A", "-----END CERTIFICATE REQUEST-----", "-----BEGIN CERTIFICATE REQUEST-----"];

/** Text-level mutation of a PEM (or any text): character edits, noise, line changes. */
export function mutateText(text: string, rng: Rng): string {
  let s = text;
  for (let k = rng.range(1, 3); k > 0; k--) {
    const n = s.length;
    const at = rng.int(n + 1);
    switch (rng.int(8)) {
      case 0:
        s = s.slice(0, at) + rng.pick(TEXT_NOISE) + s.slice(at);
        break;
      case 1:
        s = s.slice(0, at) + s.slice(at + rng.range(1, 8));
        break;
      case 2:
        s = s.slice(0, at) + String.fromCharCode(rng.int(0x80)) + s.slice(at + 1);
        break;
      case 3:
        s = s.replace(/\n/g, rng.pick(["", "\r\n", "\n\n", " "]));
        break;
      case 4:
        s = s.replace(/CERTIFICATE REQUEST/, rng.pick(["CERTIFICATE", "NEW CERTIFICATE REQUEST", "certificate request", "CERTIFICATE REQUEST ", ""]));
        break;
      case 5:
        s = s.slice(0, at);
        break;
      case 6:
        s = rng.chance(0.5) ? s + s : s.slice(at) + s.slice(0, at);
        break;
      default:
        s = s.slice(0, at) + String.fromCharCode(rng.int(0x10000)) + s.slice(at);
    }
  }
  return s;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

export function pemOf(der: Uint8Array, label = "CERTIFICATE REQUEST"): string {
  const b64 = Buffer.from(der).toString("base64");
  return `-----BEGIN ${label}-----\n${b64.replace(/.{1,64}/g, "$&\n")}-----END ${label}-----\n`;
}

export function derOfPem(pem: string): Uint8Array {
  return new Uint8Array(Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64"));
}

/** Runs `count` jobs with at most `concurrency` at a time; job i gets its index and worker number. */
export async function runPool(count: number, concurrency: number, job: (i: number, worker: number) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: concurrency }, async (_, w) => {
    while (next < count) await job(next++, w);
  });
  await Promise.all(workers);
}

export interface FuzzResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A keep-alive client: a request that does not complete within `timeoutMs` rejects (a hang is a failure). */
export function fuzzClient(baseUrl: string, opts: { ca?: string; sockets?: number; timeoutMs?: number } = {}) {
  const secure = baseUrl.startsWith("https:");
  const agent = secure
    ? new https.Agent({ ca: opts.ca, keepAlive: true, maxSockets: opts.sockets ?? 16 })
    : new http.Agent({ keepAlive: true, maxSockets: opts.sockets ?? 16 });
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const request = (method: string, path: string, body?: Uint8Array | string, headers: Record<string, string> = {}): Promise<FuzzResponse> =>
    new Promise((resolve, reject) => {
      const h: Record<string, string> = { ...headers };
      if (body !== undefined) h["content-length"] = String(Buffer.byteLength(body));
      const req = (secure ? https : http).request(new URL(path, baseUrl), { method, headers: h, agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (d: Buffer) => chunks.push(d));
        res.on("end", () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) });
        });
        res.on("error", (err) => {
          clearTimeout(timer);
          reject(err);
        });
      });
      const timer = setTimeout(() => req.destroy(new Error(`${method} ${path}: no complete answer within ${timeoutMs} ms`)), timeoutMs);
      req.on("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      req.end(body);
    });
  return { request, close: () => agent.destroy() };
}

/** Counts by key, for the report a fuzz test prints. */
export class Tally {
  readonly counts = new Map<string, number>();
  add(key: string, n = 1): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + n);
  }
  get(key: string): number {
    return this.counts.get(key) ?? 0;
  }
  toString(): string {
    return [...this.counts].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}: ${v}`).join(", ");
  }
}
