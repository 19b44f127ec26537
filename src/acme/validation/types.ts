import type { AcmeErrorType } from "../problem.ts";
import type { OwnEndpoints } from "./own-endpoints.ts";

export interface ValidationConfig {
  httpPort: number; // http-01 port (80 in production; tests use high loopback ports)
  tlsAlpnPort: number; // tls-alpn-01 port (443 in production); also the one HTTPS port an http-01 redirect may name
  resolvers: string[]; // DNS servers "host:port" for every lookup (A/AAAA, TXT); empty = system resolver
  timeoutMs: number; // whole-validation timeout, e.g. 10000
  maxRedirects: number; // http-01, e.g. 10
  ownEndpoints: OwnEndpoints; // the CA's own listeners and public URLs: http-01 never fetches from them
}

export type { OwnEndpoints } from "./own-endpoints.ts";
export type ValidationResult = { ok: true } | { ok: false; error: { type: AcmeErrorType; detail: string } };
