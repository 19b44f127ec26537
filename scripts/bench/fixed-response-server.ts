import http from "node:http";

/**
 * The ceiling for HTTP benchmarks: a minimal node:http server, in its own
 * process, answering every request with one fixed response (the status,
 * headers and body given in BENCH_FIXED_RESPONSE as JSON, body in base64).
 * Request bodies are read and dropped. Prints "listening PORT" on stdout;
 * loopback only; ends on SIGTERM.
 */
const spec = JSON.parse(process.env.BENCH_FIXED_RESPONSE ?? "{}") as { status?: number; headers?: Record<string, string>; bodyBase64?: string };
const body = Buffer.from(spec.bodyBase64 ?? "", "base64");
const status = spec.status ?? 200;
const headers = { ...spec.headers, "content-length": String(body.length) };

const server = http.createServer((req, res) => {
  const reply = () => {
    res.writeHead(status, headers);
    res.end(body);
  };
  if (req.method === "GET" || req.method === "HEAD") reply();
  else {
    req.resume();
    req.on("end", reply);
  }
});
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`listening ${(server.address() as { port: number }).port}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
