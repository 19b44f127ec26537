import type http from "node:http";
import type net from "node:net";

/**
 * A listener's connections and in-flight requests, so that a shutdown
 * waits for the requests and not for the connections. Node's server.close()
 * waits for every connection to end; closeAllConnections() only knows HTTP
 * connections, and on HTTPS a connection is one only once its TLS
 * handshake is done: a client that connected and never sent a ClientHello
 * held server.close() until the handshake timeout (120 s by default), and a
 * keep-alive connection that went idle after close() began stayed open
 * until its keep-alive timeout.
 */
export interface DrainResult {
  /** TCP connections open when the drain began. */
  connections: number;
  /** Requests being answered when the drain began. */
  inFlight: number;
  /** Requests still unanswered at the deadline: their connections were cut. */
  cut: number;
}

export interface ConnectionDrain {
  /**
   * Stops accepting connections, lets in-flight requests finish (their
   * connections close after the response) for at most `deadlineMs`, then
   * closes every connection left: idle, half-open, never-handshaken, or
   * still busy. Resolves once the listener is closed.
   */
  drain(deadlineMs: number): Promise<DrainResult>;
}

export function trackConnections(server: http.Server): ConnectionDrain {
  const sockets = new Set<net.Socket>();
  const inFlight = new Set<http.ServerResponse>();
  let draining = false;
  let lastRequestDone: (() => void) | undefined;

  // "connection" is the raw TCP socket on both node:http and node:https, before any TLS.
  server.on("connection", (socket: net.Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  server.on("request", (_req: http.IncomingMessage, res: http.ServerResponse) => {
    if (res.writableFinished) return;
    inFlight.add(res);
    if (draining && !res.headersSent) res.setHeader("connection", "close");
    res.once("close", () => {
      inFlight.delete(res);
      if (inFlight.size === 0) lastRequestDone?.();
    });
  });

  return {
    async drain(deadlineMs) {
      const result: DrainResult = { connections: sockets.size, inFlight: inFlight.size, cut: 0 };
      draining = true;
      // Each answer still to come closes its connection: the client reconnects elsewhere.
      for (const res of inFlight) if (!res.headersSent) res.setHeader("connection", "close");
      // No new connections; node also closes the HTTP connections that are idle right now.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      if (inFlight.size) {
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((resolve) => {
          lastRequestDone = resolve;
          timer = setTimeout(resolve, deadlineMs);
        });
        clearTimeout(timer);
      }
      result.cut = inFlight.size;
      server.closeAllConnections();
      for (const socket of sockets) socket.destroy();
      await closed;
      return result;
    },
  };
}
