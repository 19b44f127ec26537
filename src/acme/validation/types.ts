import type { AcmeErrorType } from "../problem.ts";

export interface ValidationConfig {
  httpPort: number; // http-01 port (80 in production; tests use high loopback ports)
  tlsAlpnPort: number; // tls-alpn-01 port (443 in production)
  resolvers: string[]; // DNS servers "host:port" for every lookup (A/AAAA, TXT); empty = system resolver
  timeoutMs: number; // whole-validation timeout, e.g. 10000
  maxRedirects: number; // http-01, e.g. 10
}

export type ValidationResult = { ok: true } | { ok: false; error: { type: AcmeErrorType; detail: string } };
