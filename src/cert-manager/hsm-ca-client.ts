import https from "node:https";

/**
 * hsm-ca's REST API as an issuer sees it: over HTTPS, trusting only the
 * issuer's caBundle, with the API token from the issuer's Secret. The token
 * goes in the Authorization header and nowhere else (no error message, no
 * log line).
 */

/** What hsm-ca answered, sorted the way the controller acts on it. */
export type HsmCaAnswer<T> =
  | { kind: "ok"; value: T }
  /** A 4xx problem document: hsm-ca refuses this request. */
  | { kind: "refused"; status: number; problemType: string; detail: string; retryAfterSeconds?: number }
  /** 5xx, a timeout or no connection: try again later. */
  | { kind: "unavailable"; detail: string; retryAfterSeconds?: number };

export interface Issued {
  serial: string;
  certificatePem: string;
  chainPem: string;
}

/** An issuance that waits for hsm-ca's M-of-N approval (a profile with `approvals`). */
export interface AwaitingApproval {
  requestId: string;
  status: string;
  required?: number;
  approvals?: number;
}

export type IssueOutcome = { issued: Issued } | { awaiting: AwaitingApproval };

export interface ApprovalState {
  status: "pending" | "approved" | "rejected" | "expired" | "done" | "failed" | string;
  issued?: Issued;
  detail?: string;
}

export interface HsmCaClient {
  /** isCA: hsm-ca refuses a profile of the other kind (a CA profile for isCA false, an end-entity one for true). */
  issue(request: { csrPem: string; profile: string; validity?: string; isCA: boolean }): Promise<HsmCaAnswer<IssueOutcome>>;
  approvalRequest(id: string): Promise<HsmCaAnswer<ApprovalState>>;
  rootPem(): Promise<HsmCaAnswer<string>>;
  /** /readyz: the HSM and the database answer. */
  ready(): Promise<HsmCaAnswer<unknown>>;
  /** The token is valid and may read (so, as an issuer token, issue from) the profile. */
  tokenCovers(profile: string): Promise<HsmCaAnswer<unknown>>;
}

export interface HsmCaEndpoint {
  url: string;
  caBundlePem: string;
  token: string;
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const MAX_ANSWER_BYTES = 1024 * 1024;

export function hsmCaClient(endpoint: HsmCaEndpoint): HsmCaClient {
  const agent = new https.Agent({ ca: endpoint.caBundlePem, keepAlive: false });
  const base = endpoint.url.replace(/\/+$/, "");
  const timeoutMs = endpoint.timeoutMs ?? DEFAULT_TIMEOUT_MS;

  function call(method: string, path: string, body?: unknown, authenticated = true): Promise<HsmCaAnswer<{ status: number; json: any; text: string }>> {
    const headers: Record<string, string> = { accept: "application/json, application/problem+json, */*" };
    if (authenticated) headers.authorization = `Bearer ${endpoint.token}`;
    const payload = body === undefined ? undefined : JSON.stringify(body);
    if (payload !== undefined) headers["content-type"] = "application/json";
    return new Promise((resolve) => {
      let settled = false;
      const finish = (a: HsmCaAnswer<{ status: number; json: any; text: string }>) => {
        if (!settled) resolve(a);
        settled = true;
      };
      const req = https.request(base + path, { method, headers, agent, timeout: timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (d: Buffer) => {
          size += d.length;
          if (size > MAX_ANSWER_BYTES) req.destroy(new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`));
          else chunks.push(d);
        });
        res.on("error", (err) => finish({ kind: "unavailable", detail: `${method} ${path}: ${err.message}` }));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          const status = res.statusCode ?? 0;
          const json = /json/.test(String(res.headers["content-type"])) ? safeJson(text) : undefined;
          const retryAfterSeconds = retryAfter(res.headers["retry-after"]);
          if (status >= 200 && status < 300) return finish({ kind: "ok", value: { status, json, text } });
          const detail = json?.detail ?? json?.title ?? (text.slice(0, 200) || `HTTP ${status}`);
          if (status >= 400 && status < 500) {
            return finish({ kind: "refused", status, problemType: String(json?.type ?? `http-${status}`), detail: String(detail), retryAfterSeconds });
          }
          finish({ kind: "unavailable", detail: `${method} ${path}: HTTP ${status}: ${detail}`, retryAfterSeconds });
        });
      });
      req.on("timeout", () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
      req.on("error", (err) => finish({ kind: "unavailable", detail: `${method} ${base}${path}: ${err.message}` }));
      req.end(payload);
    });
  }

  const map = <A, B>(a: HsmCaAnswer<A>, f: (v: A) => B): HsmCaAnswer<B> => (a.kind === "ok" ? { kind: "ok", value: f(a.value) } : a);

  return {
    async issue({ csrPem, profile, validity, isCA }) {
      const a = await call("POST", "/api/v1/certificates", { csr: csrPem, profile, isCA, ...(validity ? { validity } : {}) });
      if (a.kind !== "ok") return a;
      const { status, json } = a.value;
      if (status === 202 && typeof json?.id === "string") {
        return { kind: "ok", value: { awaiting: { requestId: json.id, status: String(json.status), required: json.required, approvals: json.approvals?.length } } };
      }
      if (status === 201 && isPem(json?.certificate)) {
        return { kind: "ok", value: { issued: { serial: String(json.serial), certificatePem: json.certificate, chainPem: typeof json.chain === "string" ? json.chain : "" } } };
      }
      // Not hsm-ca's answer (a proxy's page, say): nothing to record, so try again later.
      return { kind: "unavailable", detail: `POST /api/v1/certificates: unexpected HTTP ${status} answer without a certificate` };
    },
    async approvalRequest(id) {
      const a = await call("GET", `/api/v1/requests/${encodeURIComponent(id)}`);
      return map(a, ({ json }): ApprovalState => ({
        status: String(json?.status),
        ...(isPem(json?.certificate) ? { issued: { serial: String(json.result?.serial ?? ""), certificatePem: String(json.certificate), chainPem: String(json.chain ?? "") } } : {}),
        ...(json.result?.detail ? { detail: String(json.result.detail) } : {}),
      }));
    },
    async rootPem() {
      const a = await call("GET", "/ca/root.pem", undefined, false);
      if (a.kind === "ok" && !isPem(a.value.text)) return { kind: "unavailable", detail: "GET /ca/root.pem: the answer is not a PEM certificate" };
      return map(a, ({ text }) => text);
    },
    async ready() {
      return map(await call("GET", "/readyz", undefined, false), ({ json }) => json);
    },
    async tokenCovers(profile) {
      return map(await call("GET", `/api/v1/certificates?profile=${encodeURIComponent(profile)}&limit=1`), () => undefined);
    },
  };
}

function isPem(value: unknown): value is string {
  return typeof value === "string" && value.includes("-----BEGIN CERTIFICATE-----");
}

function safeJson(text: string): any {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function retryAfter(header: string | string[] | undefined): number | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value || !/^[0-9]{1,6}$/.test(value.trim())) return undefined;
  return Number(value);
}
