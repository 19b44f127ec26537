/**
 * A minimal ACME client (RFC 8555) over node:https, trusting only the CA's
 * root: it fetches a directory, keeps the Replay-Nonce of every response for
 * the next request, and POSTs flattened JWS bodies signed with
 * test/helpers/acme-jws.ts. Low-level on purpose: tests choose every header
 * and payload, including wrong ones.
 */
import https from "node:https";
import { signJws, type AccountKey, type FlattenedJwsBody, type JwsHeaderOptions } from "./acme-jws.ts";

export interface AcmeResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON for JSON and problem+json bodies. */
  body: any;
  text: string;
  nonce?: string;
  location?: string;
  /** Retry-After, in seconds, when present. */
  retryAfter?: number;
  /** Link header values (one per link). */
  links: string[];
  /** The Replay-Nonce was present and never seen before on any response. */
  freshNonce: boolean;
}

export interface Account {
  key: AccountKey;
  url: string;
}

export interface PostOptions {
  /** Sign with this account's kid (else with the key's jwk). */
  kid?: string;
  /** Nonce to use; null sends none; default: the last one received (or a fresh one). */
  nonce?: string | null;
  /** Header url; default the URL posted to. */
  url?: string;
  alg?: string;
  useJwk?: boolean;
  extra?: Record<string, unknown>;
  contentType?: string;
  /** Send this exact body instead of signing one. */
  rawBody?: string | Buffer;
  /** Send the body with chunked transfer encoding (no Content-Length). */
  chunked?: boolean;
}

export class AcmeClient {
  readonly agent: https.Agent;
  directory: Record<string, any> = {};
  /** The nonce to use next (from the last response). */
  private nextNonce?: string;
  /** Every Replay-Nonce seen (by any client), to check that each is fresh. */
  static readonly seenNonces = new Set<string>();
  /** Responses that came without a Replay-Nonce, or with one seen before ("METHOD url -> status"). */
  static readonly missingNonces: string[] = [];
  static readonly repeatedNonces: string[] = [];
  /** How many responses were received (all clients). */
  static responses = 0;
  readonly origin: string;

  constructor(
    baseUrl: string,
    rootPem: string,
    readonly directoryPath = "/acme/directory",
  ) {
    this.agent = new https.Agent({ ca: rootPem, keepAlive: true });
    this.origin = new URL(baseUrl).origin;
  }

  async init(): Promise<AcmeResponse> {
    const res = await this.request("GET", this.origin + this.directoryPath);
    if (res.status !== 200) throw new Error(`directory ${this.directoryPath}: HTTP ${res.status} ${res.text}`);
    this.directory = res.body;
    return res;
  }

  close(): void {
    this.agent.destroy();
  }

  request(
    method: string,
    url: string,
    opts: { body?: string | Buffer; headers?: Record<string, string>; chunked?: boolean } = {},
  ): Promise<AcmeResponse> {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.body !== undefined && !opts.chunked) headers["content-length"] = String(Buffer.byteLength(opts.body));
    return new Promise((resolve, reject) => {
      const req = https.request(url, { method, headers, agent: this.agent, timeout: 30_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (d: Buffer) => chunks.push(d));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let body: unknown;
          if (/json/.test(String(res.headers["content-type"])) && text !== "") body = JSON.parse(text);
          const nonce = res.headers["replay-nonce"] as string | undefined;
          if (nonce) this.nextNonce = nonce;
          const what = `${method} ${url} -> ${res.statusCode}`;
          AcmeClient.responses++;
          let freshNonce = false;
          if (!nonce) AcmeClient.missingNonces.push(what);
          else if (AcmeClient.seenNonces.has(nonce)) AcmeClient.repeatedNonces.push(what);
          else freshNonce = true;
          if (nonce) AcmeClient.seenNonces.add(nonce);
          const ra = res.headers["retry-after"] as string | undefined;
          const link = res.headers["link"];
          const links = (Array.isArray(link) ? link : link ? [link] : []).flatMap((l) => l.split(/,(?=\s*<)/).map((s) => s.trim()));
          resolve({
            status: res.statusCode!,
            headers: res.headers,
            body,
            text,
            nonce,
            location: res.headers["location"] as string | undefined,
            retryAfter: ra === undefined ? undefined : Number(ra),
            links,
            freshNonce,
          });
        });
        res.on("error", reject);
      });
      req.on("error", reject);
      req.on("timeout", () => req.destroy(new Error(`${method} ${url} timed out`)));
      if (opts.body !== undefined && opts.chunked) {
        const b = Buffer.from(opts.body);
        for (let i = 0; i < b.length; i += 8192) req.write(b.subarray(i, i + 8192));
        req.end();
      } else {
        req.end(opts.body);
      }
    });
  }

  /** A nonce: the last one received, or a fresh one from newNonce (HEAD). */
  async nonce(): Promise<string> {
    const n = this.nextNonce;
    this.nextNonce = undefined;
    if (n) return n;
    const res = await this.request("HEAD", this.directory.newNonce);
    if (!res.nonce) throw new Error("newNonce gave no Replay-Nonce");
    this.nextNonce = undefined;
    return res.nonce;
  }

  /** Signs and POSTs `payload` ("" for POST-as-GET) to `url`. */
  async post(url: string, key: AccountKey, payload: object | "", opts: PostOptions = {}): Promise<AcmeResponse> {
    let body: string | Buffer;
    if (opts.rawBody !== undefined) {
      body = opts.rawBody;
    } else {
      const header: JwsHeaderOptions = {
        kid: opts.kid,
        url: opts.url ?? url,
        alg: opts.alg,
        useJwk: opts.useJwk,
        extra: opts.extra,
      };
      if (opts.nonce !== null) header.nonce = opts.nonce ?? (await this.nonce());
      body = JSON.stringify(signJws(key, payload, header));
    }
    return this.request("POST", url, {
      body,
      headers: { "content-type": opts.contentType ?? "application/jose+json" },
      chunked: opts.chunked,
    });
  }

  /** POST with the account's kid. */
  postAs(account: Account, url: string, payload: object | "", opts: PostOptions = {}): Promise<AcmeResponse> {
    return this.post(url, account.key, payload, { ...opts, kid: account.url });
  }

  /** A signed body without sending it (for replaying, tampering...). */
  async sign(url: string, key: AccountKey, payload: object | "", opts: JwsHeaderOptions = {}): Promise<FlattenedJwsBody> {
    return signJws(key, payload, { url, nonce: await this.nonce(), ...opts });
  }

  async newAccount(key: AccountKey, payload: Record<string, unknown> = { termsOfServiceAgreed: true }): Promise<{ account: Account; res: AcmeResponse }> {
    const res = await this.post(this.directory.newAccount, key, payload);
    if (res.status !== 201 && res.status !== 200) throw new Error(`newAccount: HTTP ${res.status} ${res.text}`);
    return { account: { key, url: res.location! }, res };
  }

  /**
   * POST-as-GET `url` until `done(body)` or the deadline, waiting as long
   * as the server's Retry-After says (else `defaultWaitMs`).
   */
  async poll(account: Account, url: string, done: (body: any) => boolean, deadlineMs = 15_000, defaultWaitMs = 100): Promise<{ res: AcmeResponse; retryAfters: number[] }> {
    const end = Date.now() + deadlineMs;
    const retryAfters: number[] = [];
    for (;;) {
      const res = await this.postAs(account, url, "");
      if (res.status !== 200) throw new Error(`poll ${url}: HTTP ${res.status} ${res.text}`);
      if (done(res.body)) return { res, retryAfters };
      if (Date.now() > end) throw new Error(`poll ${url}: still ${JSON.stringify(res.body)}`);
      if (res.retryAfter !== undefined) retryAfters.push(res.retryAfter);
      const wait = res.retryAfter !== undefined ? Math.min(res.retryAfter * 1000, 5000) : defaultWaitMs;
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}
