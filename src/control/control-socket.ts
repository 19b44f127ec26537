import fs from "node:fs";
import http from "node:http";
import path from "node:path";

/**
 * The embedded PGlite database can be open in one process only. While the
 * service runs, the CLI sends its arguments over this Unix socket and the
 * service runs the command with its own database and HSM. The socket sits
 * in the data directory with mode 0600: whoever may use it could read the
 * PIN file beside it anyway.
 */
export function controlSocketPath(dataDir: string): string {
  return path.join(dataDir, "control.sock");
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export type CommandRunner = (argv: string[]) => Promise<CommandResult>;

export async function startControlSocket(dataDir: string, run: CommandRunner): Promise<http.Server> {
  const socketPath = controlSocketPath(dataDir);
  fs.rmSync(socketPath, { force: true }); // left by a service that died; the PGlite pid lock guards against two live ones
  const server = http.createServer(async (req, res) => {
    if (req.method !== "POST" || req.url !== "/run") {
      res.writeHead(404).end();
      return;
    }
    let body = "";
    for await (const chunk of req) {
      body += chunk;
      if (body.length > 64 * 1024) {
        res.writeHead(413).end();
        return;
      }
    }
    let argv: unknown;
    try {
      argv = JSON.parse(body).argv;
    } catch {
      argv = undefined;
    }
    if (!Array.isArray(argv) || !argv.every((a) => typeof a === "string")) {
      res.writeHead(400).end();
      return;
    }
    const result = await run(argv);
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(result));
  });
  const previous = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(socketPath, resolve);
    });
  } finally {
    process.umask(previous);
  }
  return server;
}

/** Undefined when no service listens on the socket. */
export async function sendToRunningService(dataDir: string, argv: string[]): Promise<CommandResult | undefined> {
  const socketPath = controlSocketPath(dataDir);
  if (!fs.existsSync(socketPath)) return undefined;
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: "/run", method: "POST", headers: { "content-type": "application/json" } }, (res) => {
      let data = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (data += d));
      res.on("end", () => {
        if (res.statusCode !== 200) reject(new Error(`the running service refused the command (HTTP ${res.statusCode})`));
        else resolve(JSON.parse(data) as CommandResult);
      });
    });
    req.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "ECONNREFUSED" || err.code === "ENOENT") resolve(undefined);
      else reject(err);
    });
    req.end(JSON.stringify({ argv }));
  });
}
