import http from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";

type Fetch = (request: Request, env: { incoming: { socket: Duplex } }) => Response | Promise<Response>;

/** LIST requests with a head larger than this are refused: a LIST has no body, and its head is a line and some headers. */
const MAX_HEAD_BYTES = 16 * 1024;

/**
 * Vault's LIST method (hvac's and node-vault's list calls send it) on a
 * node:http(s) server. Node's HTTP parser knows a fixed set of methods and
 * LIST is not one: it fails the request as HPE_INVALID_METHOD before any
 * handler runs. Here such a request is read from the bytes the parser
 * refused, answered as the GET ?list=true that Vault treats it as (and Go's
 * vault/api sends), and the connection closed. Every other client error
 * gets Node's own answer.
 */
export function acceptListMethod(server: http.Server, fetch: Fetch, log: Logger): void {
  server.on("clientError", (err: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Duplex) => {
    const raw = err.rawPacket;
    if (err.code === "HPE_INVALID_METHOD" && raw && raw.subarray(0, 5).toString("latin1") === "LIST ") {
      answerList(raw, socket, fetch).catch((e: Error) => {
        log.error({ err: e.message }, "answering a LIST request failed");
        socket.destroy();
      });
      return;
    }
    nodeDefault(err, socket);
  });
}

/** What node:http does with a client error when nobody listens for clientError (lib/_http_server.js). */
function nodeDefault(err: NodeJS.ErrnoException, socket: Duplex & { bytesWritten?: number }): void {
  if (socket.writable && !socket.bytesWritten) {
    const status =
      err.code === "HPE_HEADER_OVERFLOW"
        ? "431 Request Header Fields Too Large"
        : err.code === "HPE_CHUNK_EXTENSIONS_OVERFLOW"
          ? "413 Payload Too Large"
          : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
            ? "408 Request Timeout"
            : "400 Bad Request";
    socket.write(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
  }
  socket.destroy(err);
}

async function answerList(raw: Buffer, socket: Duplex, fetch: Fetch): Promise<void> {
  const end = raw.indexOf("\r\n\r\n");
  const refuse = (message: string) => write(socket, new Response(JSON.stringify({ errors: [message] }), { status: 400, headers: { "content-type": "application/json" } }));
  if (end < 0 || end > MAX_HEAD_BYTES) return refuse("send the LIST request's head in one piece, or use GET with ?list=true");
  const [requestLine, ...lines] = raw.subarray(0, end).toString("latin1").split("\r\n");
  const m = /^LIST (\/\S*) HTTP\/1\.[01]$/.exec(requestLine!);
  if (!m) return refuse("malformed LIST request line");
  const headers = new Headers();
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon <= 0) return refuse("malformed header in a LIST request");
    try {
      headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    } catch {
      return refuse("malformed header in a LIST request");
    }
  }
  if (Number(headers.get("content-length") ?? 0) > 0 || headers.has("transfer-encoding")) return refuse("a LIST request has no body");
  const url = new URL(m[1]!, `https://${headers.get("host") ?? "localhost"}`);
  url.searchParams.set("list", "true");
  headers.delete("content-length");
  const response = await fetch(new Request(url, { method: "GET", headers }), { incoming: { socket } });
  await write(socket, response);
}

async function write(socket: Duplex, response: Response): Promise<void> {
  const body = Buffer.from(await response.arrayBuffer());
  const lines = [`HTTP/1.1 ${response.status} ${http.STATUS_CODES[response.status] ?? ""}`];
  response.headers.forEach((value, name) => {
    if (name !== "content-length" && name !== "connection" && name !== "transfer-encoding") lines.push(`${name}: ${value}`);
  });
  lines.push(`content-length: ${body.length}`, "connection: close");
  socket.end(Buffer.concat([Buffer.from(lines.join("\r\n") + "\r\n\r\n", "latin1"), body]));
}
