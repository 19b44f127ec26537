import fs from "node:fs";
import inspector from "node:inspector";
import path from "node:path";

/**
 * Where a process's CPU went, by layer, from a V8 CPU profile
 * (`node --cpu-prof`): each sample is charged to the first frame, from the
 * leaf up, that belongs to a layer other than Node's own JavaScript, so
 * that time in node:tls under postgres.js counts as the database driver's
 * and time in a hono middleware as the web framework's. What is left in
 * Node's internals (tls, streams, http parser) or native code with no
 * project frame above it counts under its own name.
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Layers, most specific first: the first whose test matches a frame's URL names it. */
const LAYERS: [string, (url: string, fn: string) => boolean][] = [
  ["lint gate (src/lint)", (u) => u.includes("/src/lint/")],
  ["PKCS#11 (pkcs11js, graphene, src/hsm)", (u) => /node_modules\/(pkcs11js|graphene-pk11)\//.test(u) || u.includes("/src/hsm/")],
  ["PostgreSQL driver (postgres.js)", (u) => u.includes("node_modules/postgres/")],
  ["ORM (drizzle-orm)", (u) => u.includes("node_modules/drizzle-orm/")],
  ["PGlite", (u) => u.includes("node_modules/@electric-sql/")],
  ["ASN.1 / X.509 (@peculiar, asn1js, pvtsutils)", (u) => /node_modules\/(@peculiar|asn1js|pvtsutils|pvutils|tsyringe|reflect-metadata)\//.test(u)],
  ["HTTP framework (hono, @hono/node-server)", (u) => /node_modules\/(hono|@hono)\//.test(u)],
  ["logging, metrics (pino, prom-client)", (u) => /node_modules\/(pino|prom-client|sonic-boom|thread-stream)\//.test(u)],
  ["validation (zod)", (u) => u.includes("node_modules/zod/")],
  ["other packages", (u) => u.includes("node_modules/")],
  ["hsm-ca: ACME (src/acme)", (u) => u.includes("/src/acme/")],
  ["hsm-ca: certificate building (src/ca, src/asn1)", (u) => /\/src\/(ca|asn1)\//.test(u)],
  ["hsm-ca: store (src/store)", (u) => u.includes("/src/store/")],
  ["hsm-ca: other src/", (u) => u.includes("/src/")],
];

const SPECIAL: Record<string, string> = {
  "(garbage collector)": "garbage collection",
  "(idle)": "idle",
  "(program)": "native, no JS frame (TLS, libuv, PKCS#11 threads' callbacks)",
};

/** node:internal frames named by the part of Node they are in. */
function nodeInternal(url: string): string | undefined {
  if (!url.startsWith("node:")) return undefined;
  if (/node:(_tls|tls|internal\/tls)/.test(url)) return "Node: TLS";
  if (/node:(_http|http|internal\/http)/.test(url)) return "Node: HTTP";
  if (/node:(net|internal\/stream|stream|internal\/streams)/.test(url)) return "Node: net, streams";
  if (/node:internal\/crypto|node:crypto/.test(url)) return "Node: crypto";
  return "Node: other internals";
}

export interface LayerShare {
  layer: string;
  ms: number;
  share: number;
}

/** CPU ms by layer from a .cpuprofile file, idle left out; shares of the busy time. */
export function cpuByLayer(profileFile: string): { busyMs: number; layers: LayerShare[] } {
  return cpuByLayerOf(JSON.parse(fs.readFileSync(profileFile, "utf8")) as CpuProfile);
}

/**
 * This process's main thread profiled (node:inspector, 1 ms samples) while
 * `fn` runs: for a benchmark whose service runs in-process, exactly the
 * timed window, without the start or the warm-up.
 */
export async function profileWhile<T>(fn: () => Promise<T>): Promise<{ result: T; busyMs: number; layers: LayerShare[] }> {
  const session = new inspector.Session();
  session.connect();
  const post = <R>(method: string, params?: object) =>
    new Promise<R>((resolve, reject) => session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res as R))));
  try {
    await post("Profiler.enable");
    await post("Profiler.setSamplingInterval", { interval: 1000 });
    await post("Profiler.start");
    const result = await fn();
    const { profile } = await post<{ profile: CpuProfile }>("Profiler.stop");
    return { result, ...cpuByLayerOf(profile) };
  } finally {
    session.disconnect();
  }
}

export function cpuByLayerOf(profile: CpuProfile): { busyMs: number; layers: LayerShare[] } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const layerOf = new Map<number, string>();
  const classify = (id: number): string => {
    const known = layerOf.get(id);
    if (known) return known;
    let layer: string | undefined;
    const own = byId.get(id)!;
    if (SPECIAL[own.callFrame.functionName]) layer = SPECIAL[own.callFrame.functionName];
    let internal: string | undefined;
    for (let cur: number | undefined = id; !layer && cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur)!.callFrame;
      const found = LAYERS.find(([, test]) => test(f.url, f.functionName));
      if (found) layer = found[0];
      else internal ??= nodeInternal(f.url);
    }
    layer ??= internal ?? "native, no JS frame (TLS, libuv, PKCS#11 threads' callbacks)";
    layerOf.set(id, layer);
    return layer;
  };
  const totals = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const layer = classify(id);
    totals.set(layer, (totals.get(layer) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  });
  totals.delete("idle");
  const busyMs = [...totals.values()].reduce((a, b) => a + b, 0);
  const layers = [...totals.entries()].map(([layer, ms]) => ({ layer, ms, share: ms / busyMs })).sort((a, b) => b.ms - a.ms);
  return { busyMs, layers };
}

/** The newest .cpuprofile a `--cpu-prof-dir` holds (the process's main thread). */
export function newestProfile(dir: string): string | undefined {
  const files = fs.readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"));
  files.sort((a, b) => fs.statSync(path.join(dir, b)).size - fs.statSync(path.join(dir, a)).size);
  return files[0] ? path.join(dir, files[0]) : undefined;
}
