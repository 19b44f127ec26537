import https from "node:https";

export interface ApiResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
  text: string;
}

/** An HTTPS client that trusts only the CA's root, as a relying party would. */
export function apiClient(baseUrl: string, rootPem: string) {
  const agent = new https.Agent({ ca: rootPem, keepAlive: true, maxSockets: 64 });
  return function request(
    method: string,
    path: string,
    opts: { token?: string; json?: unknown; raw?: string | Buffer; headers?: Record<string, string> } = {},
  ): Promise<ApiResponse> {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    let body: string | Buffer | undefined = opts.raw;
    if (opts.json !== undefined) {
      body = JSON.stringify(opts.json);
      headers["content-type"] = "application/json";
    }
    if (body !== undefined && !headers["content-type"]) headers["content-type"] = "application/json";
    const send = (retried: boolean): Promise<ApiResponse> => new Promise((resolve, reject) => {
      const req = https.request(new URL(path, baseUrl), { method, headers, agent, timeout: 30_000 }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d) => (text += d));
        res.on("end", () => {
          let parsed: unknown = undefined;
          if (/json/.test(String(res.headers["content-type"]))) parsed = JSON.parse(text);
          resolve({ status: res.statusCode!, headers: res.headers, body: parsed, text });
        });
      });
      req.on("error", (err: NodeJS.ErrnoException) => {
        // A kept-alive socket the server closed as idle just as it was reused: the request
        // never reached the server (Node's documented retry case), so send it once more.
        if (req.reusedSocket && err.code === "ECONNRESET" && !retried) send(true).then(resolve, reject);
        else reject(err);
      });
      req.on("timeout", () => req.destroy(new Error(`${method} ${path} timed out`)));
      req.end(body);
    });
    return send(false);
  };
}

export type ApiRequest = ReturnType<typeof apiClient>;
