import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A FAKE Kubernetes API server: no kube-apiserver can run on this machine,
 * so this speaks just the REST calls @kubernetes/client-node makes for the
 * controller, the way the real one answers them:
 *
 *   GET    /apis/{g}/{v}/{plural}                         list across namespaces (with a resourceVersion)
 *   GET    /apis/{g}/{v}/{plural}?watch=true&resourceVersion=N   JSON-lines watch, replaying events after N
 *   PATCH  /apis/{g}/{v}/namespaces/{ns}/{plural}/{name}/status  and the cluster-scoped form:
 *          application/merge-patch+json only (415 otherwise), RFC 7386 merge of status,
 *          409 Conflict when metadata.resourceVersion is given and stale
 *   GET    /api/v1/namespaces/{ns}/secrets/{name}
 *   POST   /api/v1/namespaces/{ns}/events
 *
 * Every call must carry the bearer token; everything else is 404 with a
 * Status body. It keeps no schema, runs no admission webhooks (cert-manager's
 * would refuse changes to Approved/Denied: the tests check that the
 * controller sends them back unchanged) and no garbage collection.
 */

export interface StoredObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; uid?: string; resourceVersion?: string; generation?: number; [k: string]: unknown };
  [k: string]: unknown;
}

interface WatchEvent {
  rv: number;
  resource: string;
  type: "ADDED" | "MODIFIED" | "DELETED";
  object: StoredObject;
}

export interface RecordedCall {
  method: string;
  path: string;
  contentType?: string;
  body?: unknown;
}

export class FakeKubeApi {
  readonly token = "fake-kube-api-token";
  /** Every request, in order. */
  readonly calls: RecordedCall[] = [];
  readonly events: StoredObject[] = [];
  private readonly objects = new Map<string, StoredObject>();
  private readonly history: WatchEvent[] = [];
  private readonly watchers = new Set<{ resource: string; res: http.ServerResponse }>();
  private rv = 100;
  private server?: http.Server;

  async start(): Promise<string> {
    this.server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", () => this.route(req, res, body));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  /** Creates or replaces an object, as kubectl apply would; the generation moves when anything but status changes. */
  put(resource: string, object: StoredObject): StoredObject {
    const key = this.key(resource, object.metadata.namespace, object.metadata.name);
    const previous = this.objects.get(key);
    const { status: _s, ...spec } = object as { status?: unknown };
    const { status: _p, ...previousSpec } = (previous ?? {}) as { status?: unknown };
    const specChanged = !previous || JSON.stringify(stripVolatile(spec)) !== JSON.stringify(stripVolatile(previousSpec));
    const stored = structuredClone(object);
    stored.metadata.uid = previous?.metadata.uid ?? object.metadata.uid ?? `uid-${this.rv}`;
    stored.metadata.generation = (previous?.metadata.generation ?? 0) + (specChanged ? 1 : 0) || 1;
    this.commit(resource, key, stored, previous ? "MODIFIED" : "ADDED");
    return structuredClone(stored);
  }

  get(resource: string, namespace: string | undefined, name: string): StoredObject | undefined {
    const o = this.objects.get(this.key(resource, namespace, name));
    return o && structuredClone(o);
  }

  private key(resource: string, namespace: string | undefined, name: string): string {
    return `${resource}|${namespace ?? ""}|${name}`;
  }

  private commit(resource: string, key: string, object: StoredObject, type: WatchEvent["type"]): void {
    object.metadata.resourceVersion = String(++this.rv);
    this.objects.set(key, object);
    const event: WatchEvent = { rv: this.rv, resource, type, object: structuredClone(object) };
    this.history.push(event);
    for (const w of this.watchers) if (w.resource === resource) w.res.write(JSON.stringify({ type, object: event.object }) + "\n");
  }

  private route(req: http.IncomingMessage, res: http.ServerResponse, raw: string): void {
    const url = new URL(req.url ?? "/", "http://x");
    const contentType = req.headers["content-type"];
    const body = raw ? safeJson(raw) : undefined;
    this.calls.push({ method: req.method ?? "", path: url.pathname + url.search, ...(contentType ? { contentType } : {}), ...(body !== undefined ? { body } : {}) });
    if (req.headers.authorization !== `Bearer ${this.token}`) return status(res, 401, "Unauthorized", "Unauthorized");
    const p = url.pathname.split("/").filter(Boolean);

    // /api/v1/namespaces/{ns}/secrets/{name}, /api/v1/namespaces/{ns}/events
    if (p[0] === "api" && p[1] === "v1" && p[2] === "namespaces") {
      const ns = p[3]!;
      if (req.method === "GET" && p[4] === "secrets" && p.length === 6) {
        const secret = this.objects.get(this.key("v1/secrets", ns, p[5]!));
        return secret ? json(res, 200, secret) : status(res, 404, "NotFound", `secrets "${p[5]}" not found`);
      }
      if (req.method === "POST" && p[4] === "events" && p.length === 5) {
        const event = { ...(body as StoredObject), metadata: { ...(body as StoredObject).metadata, name: `${(body as any).metadata.generateName}${this.rv}`, namespace: ns } };
        this.events.push(event);
        return json(res, 201, event);
      }
    }

    if (p[0] === "apis" && p.length >= 4) {
      const resourceOf = (plural: string) => `${p[1]}/${p[2]}/${plural}`;
      // Collection across namespaces: /apis/{g}/{v}/{plural}
      if (req.method === "GET" && p.length === 4) {
        const resource = resourceOf(p[3]!);
        if (url.searchParams.get("watch") === "true") return this.watch(resource, Number(url.searchParams.get("resourceVersion") ?? 0), res);
        const items = [...this.objects.entries()].filter(([k]) => k.startsWith(resource + "|")).map(([, o]) => o);
        return json(res, 200, { apiVersion: `${p[1]}/${p[2]}`, kind: "List", metadata: { resourceVersion: String(this.rv) }, items });
      }
      // Status subresource, namespaced or cluster-scoped.
      const namespaced = p[3] === "namespaces";
      const [ns, plural, name, sub] = namespaced ? [p[4], p[5], p[6], p[7]] : [undefined, p[3], p[4], p[5]];
      if (plural && name) {
        const resource = resourceOf(plural);
        const key = this.key(resource, ns, name);
        const current = this.objects.get(key);
        if (!current) return status(res, 404, "NotFound", `${plural} "${name}" not found`);
        if (req.method === "GET" && sub === undefined) return json(res, 200, current);
        if (req.method === "PATCH" && sub === "status") {
          if (contentType !== "application/merge-patch+json") return status(res, 415, "UnsupportedMediaType", `the body of the request was in an unknown format - accepted media types include: application/merge-patch+json (got ${contentType})`);
          const patch = body as { metadata?: { resourceVersion?: string }; status?: unknown };
          if (patch?.metadata?.resourceVersion && patch.metadata.resourceVersion !== current.metadata.resourceVersion) {
            return status(res, 409, "Conflict", `Operation cannot be fulfilled on ${plural} "${name}": the object has been modified; please apply your changes to the latest version and try again`);
          }
          const next = structuredClone(current);
          (next as any).status = mergePatch((current as any).status, patch?.status);
          this.commit(resource, key, next, "MODIFIED");
          return json(res, 200, next);
        }
      }
    }
    status(res, 404, "NotFound", `the server could not find the requested resource (${req.method} ${url.pathname})`);
  }

  private watch(resource: string, since: number, res: http.ServerResponse): void {
    res.writeHead(200, { "content-type": "application/json", "transfer-encoding": "chunked" });
    // The client's fetch resolves on the headers: send them now, not with the first event.
    res.flushHeaders();
    for (const e of this.history) if (e.resource === resource && e.rv > since) res.write(JSON.stringify({ type: e.type, object: e.object }) + "\n");
    const watcher = { resource, res };
    this.watchers.add(watcher);
    res.on("close", () => this.watchers.delete(watcher));
  }
}

/** RFC 7386 JSON Merge Patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = target && typeof target === "object" && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function stripVolatile(o: any): unknown {
  const { metadata, ...rest } = o ?? {};
  const { resourceVersion: _r, generation: _g, uid: _u, ...meta } = metadata ?? {};
  return { ...rest, metadata: meta };
}

function json(res: http.ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { "content-type": "application/json" }).end(JSON.stringify(body));
}

function status(res: http.ServerResponse, code: number, reason: string, message: string): void {
  json(res, code, { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code });
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
