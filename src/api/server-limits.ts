/**
 * Node's own limits on both listeners (HTTPS and plain HTTP), passed as
 * serve()'s serverOptions: a client cannot hold a connection open by
 * sending its headers or body slowly, nor send huge headers.
 *
 *  - maxHeaderSize: larger request headers get 431 and the connection closes;
 *  - headersTimeout: headers not complete in time: 408, connection closed;
 *  - requestTimeout: the whole request (headers and body) not received in time: 408, closed;
 *  - keepAliveTimeout: an idle keep-alive connection is closed after this;
 *  - connectionsCheckingInterval: how often Node checks the two timeouts
 *    above (its default, 30 s, would let a slow client stay that much longer).
 *
 * HSM_CA_HEADERS_TIMEOUT_MS and HSM_CA_REQUEST_TIMEOUT_MS override the two
 * timeouts (read when this module loads), e.g. to test them quickly.
 */
export interface ServerLimits {
  maxHeaderSize: number;
  headersTimeout: number;
  requestTimeout: number;
  keepAliveTimeout: number;
  connectionsCheckingInterval: number;
}

export function serverLimits(env: NodeJS.ProcessEnv = process.env): ServerLimits {
  const ms = (name: string, fallback: number) => {
    const v = Number(env[name]);
    return Number.isInteger(v) && v >= 100 && v <= 600_000 ? v : fallback;
  };
  const headersTimeout = ms("HSM_CA_HEADERS_TIMEOUT_MS", 10_000);
  // Node wants requestTimeout >= headersTimeout (or 0).
  const requestTimeout = Math.max(headersTimeout, ms("HSM_CA_REQUEST_TIMEOUT_MS", 30_000));
  return {
    maxHeaderSize: 16 * 1024,
    headersTimeout,
    requestTimeout,
    keepAliveTimeout: 5_000,
    connectionsCheckingInterval: Math.min(1_000, headersTimeout),
  };
}

/** The options of both listeners: serve({ ..., serverOptions: { ...SERVER_LIMITS, key, cert } }). */
export const SERVER_LIMITS: Readonly<ServerLimits> = Object.freeze(serverLimits());
