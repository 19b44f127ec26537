import fs from "node:fs";
import path from "node:path";
import cron from "node-cron";
import { z } from "zod";
import type { HsmConfig } from "./hsm/hsm-config.ts";
import { CA_KEY_ALGORITHMS } from "./hsm/key-algorithms.ts";
import { parseDuration } from "./policy/duration.ts";
import { DEFAULT_RATE_LIMITS, parseRateSpec, type RateSpec } from "./policy/rate-limit.ts";
import { DatabaseUrlError, sessionTargetOf } from "./store/postgres-hosts.ts";

/**
 * Every setting comes from the environment (HSM_CA_*), so the same build runs
 * on a laptop, in compose and under a process manager. docs/configuration.md lists them.
 */
const DEFAULT_SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so";

const list = z
  .string()
  .transform((s) => s.split(",").map((x) => x.trim()).filter(Boolean));
const port = z.coerce.number().int().min(0).max(65535);
const keyAlgorithm = z.enum(CA_KEY_ALGORITHMS);
const rate = z.string().refine((t) => parseRateSpec(t) !== undefined, 'a rate like "50/s", "50/s burst 100", "600/m", or "off"');

/** Failures per client address and window before its requests get rate-limited (src/api/auth-failures.ts). */
export const DEFAULT_AUTH_FAILURES = { limit: 20, window: "1m" } as const;

const envSchema = z.object({
  HSM_CA_DATA_DIR: z.string().default("./data"),
  HSM_CA_PROFILES_DIR: z.string().default("./profiles"),
  HSM_CA_PKCS11_MODULE: z.string().optional(),
  HSM_CA_TOKEN_LABEL: z.string().min(1).default("hsm-ca"),
  HSM_CA_PIN: z.string().min(1).optional(),
  HSM_CA_PIN_FILE: z.string().min(1).optional(),
  HSM_CA_ROOT_TOKEN_LABEL: z.string().min(1).optional(),
  HSM_CA_ROOT_PIN: z.string().min(1).optional(),
  HSM_CA_ROOT_PIN_FILE: z.string().min(1).optional(),
  HSM_CA_ROTATION_SCHEDULE: z.string().optional(),
  HSM_CA_ROTATION_REMAINING: z.string().regex(/^([0-9]{1,2}%|[1-9][0-9]*[smhd])$/, 'a share like "33%" or a duration like "30d"').optional(),
  HSM_CA_HSM_SESSIONS: z.coerce.number().int().min(1).max(64).default(4),
  HSM_CA_HSM_QUEUE_LIMIT: z.coerce.number().int().min(0).max(1_000_000).default(256),
  DATABASE_URL: z.string().min(1).optional(),
  HSM_CA_DATABASE_ANSWER_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(2_000),
  HSM_CA_DATABASE_STATEMENT_TIMEOUT_MS: z.coerce.number().int().min(1_000).max(3_600_000).default(60_000),
  HSM_CA_HTTPS_HOST: z.string().default("127.0.0.1"),
  HSM_CA_HTTPS_PORT: port.default(8443),
  HSM_CA_HTTP_HOST: z.string().default("127.0.0.1"),
  HSM_CA_HTTP_PORT: port.default(8080),
  HSM_CA_SERVER_NAMES: list.default(["localhost", "127.0.0.1"]),
  HSM_CA_ROOT_SUBJECT: z.string().default("CN=hsm-ca Root CA,O=hsm-ca"),
  HSM_CA_ROOT_ALGORITHM: keyAlgorithm.default("ecdsa-p384"),
  HSM_CA_ROOT_VALIDITY_DAYS: z.coerce.number().int().positive().default(3650),
  HSM_CA_INTERMEDIATE_SUBJECT: z.string().default("CN=hsm-ca Issuing CA 1,O=hsm-ca"),
  HSM_CA_INTERMEDIATE_ALGORITHM: keyAlgorithm.default("ecdsa-p256"),
  HSM_CA_INTERMEDIATE_VALIDITY_DAYS: z.coerce.number().int().positive().default(365),
  HSM_CA_INTERMEDIATE_PATH_LENGTH: z.coerce.number().int().min(0).max(4).default(1),
  HSM_CA_AUTO_INIT: z.enum(["true", "false"]).optional(),
  HSM_CA_PUBLIC_URL: z.string().url().optional(),
  HSM_CA_PUBLIC_HTTP_URL: z.string().url().optional(),
  HSM_CA_CRL_PARTITIONS: z.coerce.number().int().min(0).max(1024).default(0),
  HSM_CA_CRL_LIFETIME: z.string().regex(/^[1-9][0-9]*[smhd]$/).default("24h"),
  HSM_CA_CRL_DELTA_LIFETIME: z.string().regex(/^[1-9][0-9]*[smhd]$/).default("1h"),
  HSM_CA_OCSP_SIGNER: z.enum(["delegated", "ca"]).default("delegated"),
  HSM_CA_OCSP_RESPONSE_LIFETIME: z.string().regex(/^[1-9][0-9]*[smhd]$/).default("12h"),
  HSM_CA_OCSP_RESPONDER_LIFETIME: z.string().regex(/^[1-9][0-9]*[smhd]$/).default("30d"),
  HSM_CA_OCSP_SIGN_RATE: z.coerce.number().int().min(1).max(100_000).default(200),
  /** Share of the measured OCSP signing capacity the background pre-signing may use (issuance keeps the rest). */
  HSM_CA_OCSP_HSM_SHARE: z.coerce.number().gt(0).max(1).default(0.25),
  /** off: certificates, CRLs and OCSP responses are signed without the lint gate (unsafe; docs/lint.md). */
  HSM_CA_LINT: z.enum(["on", "off"]).default("on"),
  HSM_CA_ACME_PROFILES_DIR: z.string().optional(),
  HSM_CA_ACME_HTTP01_PORT: port.default(80),
  HSM_CA_ACME_TLSALPN01_PORT: port.default(443),
  HSM_CA_ACME_RESOLVERS: list.default([]),
  HSM_CA_ACME_VALIDATION_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(10_000),
  HSM_CA_RATE_LIMIT_PER_TOKEN: rate.default(DEFAULT_RATE_LIMITS.perToken),
  HSM_CA_ACME_RATE_LIMIT_PER_ACCOUNT: rate.default(DEFAULT_RATE_LIMITS.perAcmeAccount),
  HSM_CA_AUTH_FAILURE_LIMIT: z.coerce.number().int().min(0).max(1_000_000).default(DEFAULT_AUTH_FAILURES.limit),
  HSM_CA_AUTH_FAILURE_WINDOW: z
    .string()
    .refine((s) => (parseDuration(s) ?? 0) >= 1000, 'expected a duration of at least 1s like "1m" (units s, m, h, d)')
    .default(DEFAULT_AUTH_FAILURES.window),
  HSM_CA_APPROVAL_TTL: z.string().refine((s) => parseDuration(s) !== undefined, 'expected a duration like "24h" (units s, m, h, d)').default("24h"),
  HSM_CA_CA_CHANGE_APPROVALS: z.coerce.number().int().min(0).max(16).default(2),
  HSM_CA_AUDIT_CHECKPOINT_INTERVAL: z.string().refine((s) => parseDuration(s) !== undefined, 'expected a duration like "5m" (units s, m, h, d)').default("5m"),
  /** Service processes (node:cluster) sharing the listeners; above 1 needs PostgreSQL. */
  HSM_CA_WORKERS: z.coerce.number().int().min(1).max(64).default(1),
  HSM_CA_SHUTDOWN_DRAIN_MS: z.coerce.number().int().min(0).max(600_000).default(10_000),
  HSM_CA_TLS_HANDSHAKE_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(10_000),
  HSM_CA_MAX_CONNECTIONS: z.coerce.number().int().min(1).max(10_000_000).optional(),
  HSM_CA_METRICS_TOKEN: z.string().min(16, "at least 16 characters").max(200).regex(/^\S+$/, "no whitespace").optional(),
  HSM_CA_METRICS_TOKEN_FILE: z.string().min(1).optional(),
  HSM_CA_VAULT_API: z.enum(["on", "off"]).default("on"),
  HSM_CA_VAULT_MOUNT: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'one path segment like "pki" or "pki_int"').default("pki"),
  HSM_CA_VAULT_CA_PROFILE: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/).optional(),
  HSM_CA_VAULT_ROLES: z.string().refine((t) => "roles" in parseVaultRoles(t), 'a list like "web=tls-server,mesh=spiffe-svid"').default(""),
  HSM_CA_LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

export type { HsmConfig };

export interface HierarchyConfig {
  rootSubject: string;
  rootAlgorithm: z.infer<typeof keyAlgorithm>;
  rootValidityDays: number;
  intermediateSubject: string;
  intermediateAlgorithm: z.infer<typeof keyAlgorithm>;
  intermediateValidityDays: number;
  /**
   * basicConstraints pathLen of new issuing intermediates: 1 lets them sign
   * constrained sub-CAs (CA profiles, e.g. a mesh's issuer), 0 only leaves.
   * New roots get one more. Capped by the signing root's own path length.
   */
  intermediatePathLength: number;
}

export interface Config {
  dataDir: string;
  /** Lint before sign (docs/lint.md): on unless HSM_CA_LINT=off, which is unsafe. */
  lint: { enabled: boolean };
  profilesDir: string;
  hsm: HsmConfig;
  /** Unset: embedded PGlite under dataDir. */
  databaseUrl?: string;
  /** PostgreSQL: when a query without an answer makes the pool check the database is there, and the server's statement timeout. */
  databaseBounds: { answerTimeoutMs: number; statementTimeoutMs: number };
  /** Service processes sharing the listeners (node:cluster); 1: this process serves. */
  workers: number;
  https: { host: string; port: number };
  http: { host: string; port: number };
  serverNames: string[];
  hierarchy: HierarchyConfig;
  /**
   * Base of the absolute URLs the ACME server hands out (e.g. behind a proxy).
   * Unset: taken from each request's Host header.
   */
  publicUrl?: string;
  /**
   * Base of the plain-HTTP URLs written into certificates (CRLs, OCSP, CA
   * certificates). Unset: http://<HTTP host>:<HTTP port> as listening.
   */
  publicHttpUrl?: string;
  revocation: {
    crlPartitions: number;
    crlLifetimeMs: number;
    crlDeltaLifetimeMs: number;
    ocspSigner: "delegated" | "ca";
    ocspResponseLifetimeMs: number;
    ocspResponderLifetimeMs: number;
    /** Background OCSP signatures per second at most, so that issuance keeps the HSM. */
    ocspSignRate: number;
    /** Share (0-1] of the measured signing capacity background OCSP signing may take. */
    ocspHsmShare: number;
  };
  acme: {
    profilesDir: string;
    http01Port: number;
    tlsAlpn01Port: number;
    /** DNS servers ("host:port") for challenge validation; empty: the system's. */
    resolvers: string[];
    validationTimeoutMs: number;
  };
  rotation: {
    /** node-cron expression: rotate at each tick. */
    schedule?: string;
    /** Rotate when less than this remains: a share of the lifetime ("33%") or a duration in ms. */
    remaining?: { share: number } | { ms: number };
  };
  /** Requests per API token and per ACME account (src/policy/rate-limit.ts); null: no limit. */
  rateLimits: { perToken: RateSpec; perAcmeAccount: RateSpec };
  /** Authentication failures per client address (src/api/auth-failures.ts): 429 beyond `limit` a window (0: never); audit entries aggregated per window. */
  authFailures: { limit: number; windowMs: number };
  approvals: {
    /** How long an approval request stays open. */
    ttlMs: number;
    /** Admins who must approve a manual rotation or a key destruction; 0: no gate. */
    caChange: number;
  };
  /** Create the root and intermediate on start when missing (default: only on the embedded SoftHSM2). */
  autoInit: boolean;
  /** How often the audit log's chain head is signed (a checkpoint), besides at shutdown. */
  audit: { checkpointIntervalMs: number };
  listeners: {
    /** On SIGTERM: how long in-flight requests may take before their connections are cut. */
    shutdownDrainMs: number;
    /** A TLS connection that has not completed its handshake by then is closed. */
    tlsHandshakeTimeoutMs: number;
    /** Open connections per listener at most; unset: derived from the descriptor limit (src/api/connection-cap.ts). */
    maxConnections?: number;
  };
  /** GET /metrics: unset token: unauthenticated; set: only with this bearer token (never logged). */
  metrics: { token?: string };
  /** The Vault-compatible PKI API under /v1 on the HTTPS listener (src/vault); undefined: off. */
  vault?: VaultSettings;
  logLevel: z.infer<typeof envSchema>["HSM_CA_LOG_LEVEL"];
}

/** HSM_CA_VAULT_*: where the Vault-compatible API answers and what its roles mean. */
export interface VaultSettings {
  /** The PKI mount's name: /v1/<mount>/sign/<role> and so on. */
  mount: string;
  /** Vault role name -> hsm-ca profile; a role not listed is the profile of its own name. */
  roles: Record<string, string>;
  /** The CA profile root/sign-intermediate issues from; unset: the only CA profile, if there is exactly one. */
  caProfile?: string;
}

/**
 * HSM_CA_VAULT_ROLES: "web=tls-server,mesh=spiffe-svid"; the offending part
 * when it does not parse.
 */
export function parseVaultRoles(text: string): { roles: Record<string, string> } | { error: string } {
  const roles: Record<string, string> = {};
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const m = /^([A-Za-z0-9][A-Za-z0-9._-]{0,99})=([A-Za-z0-9][A-Za-z0-9._-]{0,99})$/.exec(part);
    if (!m) return { error: `"${part}" is not ROLE=PROFILE` };
    if (roles[m[1]!]) return { error: `role ${m[1]} is mapped twice` };
    roles[m[1]!] = m[2]!;
  }
  return { roles };
}

export class ConfigError extends Error {}

function parseRemaining(text: string): { share: number } | { ms: number } {
  return text.endsWith("%") ? { share: Number(text.slice(0, -1)) / 100 } : { ms: parseDuration(text)! };
}

/** The token in HSM_CA_METRICS_TOKEN_FILE; errors name the file, never its content. */
function readMetricsToken(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(`invalid setting HSM_CA_METRICS_TOKEN_FILE: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? "error"}`);
  }
  const token = text.trim();
  if (token.length < 16 || /\s/.test(token)) throw new ConfigError(`invalid setting HSM_CA_METRICS_TOKEN_FILE: ${file} must hold one token of at least 16 characters`);
  return token;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(`invalid setting ${issue.path.join(".")}: ${issue.message}`);
  }
  const e = parsed.data;
  if (e.HSM_CA_ROTATION_SCHEDULE && !cron.validate(e.HSM_CA_ROTATION_SCHEDULE)) {
    throw new ConfigError(`invalid setting HSM_CA_ROTATION_SCHEDULE: "${e.HSM_CA_ROTATION_SCHEDULE}" is not a cron expression`);
  }
  const dataDir = path.resolve(e.HSM_CA_DATA_DIR);
  const embedded = e.HSM_CA_PKCS11_MODULE === undefined;
  if (embedded && (e.HSM_CA_PIN || e.HSM_CA_PIN_FILE)) {
    // The embedded token was initialised with the generated PIN in the data directory.
    throw new ConfigError("HSM_CA_PIN and HSM_CA_PIN_FILE apply with HSM_CA_PKCS11_MODULE; the embedded token uses its generated PIN file");
  }
  if (!embedded && !e.HSM_CA_PIN && !e.HSM_CA_PIN_FILE) {
    throw new ConfigError("HSM_CA_PKCS11_MODULE is set: give the token PIN in HSM_CA_PIN or HSM_CA_PIN_FILE");
  }
  if (e.DATABASE_URL) {
    // A target hsm-ca cannot write to is a wrong setting (exit 2), found before anything starts.
    try {
      sessionTargetOf(e.DATABASE_URL);
    } catch (err) {
      if (err instanceof DatabaseUrlError) throw new ConfigError(err.message);
      throw err;
    }
  }
  if (e.HSM_CA_WORKERS > 1 && !e.DATABASE_URL) {
    throw new ConfigError("HSM_CA_WORKERS above 1 needs PostgreSQL (DATABASE_URL): the embedded database serves one process");
  }
  const pinSource = e.HSM_CA_PIN
    ? { env: "HSM_CA_PIN" }
    : { file: path.resolve(e.HSM_CA_PIN_FILE ?? path.join(dataDir, "hsm", "user.pin")) };
  return {
    dataDir,
    profilesDir: path.resolve(e.HSM_CA_PROFILES_DIR),
    hsm: {
      module: e.HSM_CA_PKCS11_MODULE ?? DEFAULT_SOFTHSM,
      tokenLabel: e.HSM_CA_TOKEN_LABEL,
      pinSource,
      sessions: e.HSM_CA_HSM_SESSIONS,
      queueLimit: e.HSM_CA_HSM_QUEUE_LIMIT,
      embedded,
      rootToken: e.HSM_CA_ROOT_TOKEN_LABEL
        ? {
            label: e.HSM_CA_ROOT_TOKEN_LABEL,
            pinSource: e.HSM_CA_ROOT_PIN
              ? { env: "HSM_CA_ROOT_PIN" }
              : e.HSM_CA_ROOT_PIN_FILE
                ? { file: path.resolve(e.HSM_CA_ROOT_PIN_FILE) }
                : pinSource,
          }
        : undefined,
    },
    rotation: {
      schedule: e.HSM_CA_ROTATION_SCHEDULE || undefined,
      remaining: parseRemaining(e.HSM_CA_ROTATION_REMAINING ?? "33%"),
    },
    databaseUrl: e.DATABASE_URL,
    databaseBounds: { answerTimeoutMs: e.HSM_CA_DATABASE_ANSWER_TIMEOUT_MS, statementTimeoutMs: e.HSM_CA_DATABASE_STATEMENT_TIMEOUT_MS },
    workers: e.HSM_CA_WORKERS,
    https: { host: e.HSM_CA_HTTPS_HOST, port: e.HSM_CA_HTTPS_PORT },
    http: { host: e.HSM_CA_HTTP_HOST, port: e.HSM_CA_HTTP_PORT },
    serverNames: e.HSM_CA_SERVER_NAMES,
    hierarchy: {
      rootSubject: e.HSM_CA_ROOT_SUBJECT,
      rootAlgorithm: e.HSM_CA_ROOT_ALGORITHM,
      rootValidityDays: e.HSM_CA_ROOT_VALIDITY_DAYS,
      intermediateSubject: e.HSM_CA_INTERMEDIATE_SUBJECT,
      intermediateAlgorithm: e.HSM_CA_INTERMEDIATE_ALGORITHM,
      intermediateValidityDays: e.HSM_CA_INTERMEDIATE_VALIDITY_DAYS,
      intermediatePathLength: e.HSM_CA_INTERMEDIATE_PATH_LENGTH,
    },
    publicUrl: e.HSM_CA_PUBLIC_URL?.replace(/\/+$/, ""),
    publicHttpUrl: e.HSM_CA_PUBLIC_HTTP_URL?.replace(/\/+$/, ""),
    lint: { enabled: e.HSM_CA_LINT === "on" },
    revocation: {
      crlPartitions: e.HSM_CA_CRL_PARTITIONS,
      crlLifetimeMs: parseDuration(e.HSM_CA_CRL_LIFETIME)!,
      crlDeltaLifetimeMs: parseDuration(e.HSM_CA_CRL_DELTA_LIFETIME)!,
      ocspSigner: e.HSM_CA_OCSP_SIGNER,
      ocspResponseLifetimeMs: parseDuration(e.HSM_CA_OCSP_RESPONSE_LIFETIME)!,
      ocspResponderLifetimeMs: parseDuration(e.HSM_CA_OCSP_RESPONDER_LIFETIME)!,
      ocspSignRate: e.HSM_CA_OCSP_SIGN_RATE,
      ocspHsmShare: e.HSM_CA_OCSP_HSM_SHARE,
    },
    acme: {
      profilesDir: path.resolve(e.HSM_CA_ACME_PROFILES_DIR ?? path.join(e.HSM_CA_PROFILES_DIR, "acme")),
      http01Port: e.HSM_CA_ACME_HTTP01_PORT,
      tlsAlpn01Port: e.HSM_CA_ACME_TLSALPN01_PORT,
      resolvers: e.HSM_CA_ACME_RESOLVERS,
      validationTimeoutMs: e.HSM_CA_ACME_VALIDATION_TIMEOUT_MS,
    },
    rateLimits: {
      perToken: parseRateSpec(e.HSM_CA_RATE_LIMIT_PER_TOKEN)!,
      perAcmeAccount: parseRateSpec(e.HSM_CA_ACME_RATE_LIMIT_PER_ACCOUNT)!,
    },
    authFailures: { limit: e.HSM_CA_AUTH_FAILURE_LIMIT, windowMs: parseDuration(e.HSM_CA_AUTH_FAILURE_WINDOW)! },
    approvals: { ttlMs: parseDuration(e.HSM_CA_APPROVAL_TTL)!, caChange: e.HSM_CA_CA_CHANGE_APPROVALS },
    autoInit: e.HSM_CA_AUTO_INIT ? e.HSM_CA_AUTO_INIT === "true" : embedded,
    audit: { checkpointIntervalMs: parseDuration(e.HSM_CA_AUDIT_CHECKPOINT_INTERVAL)! },
    listeners: {
      shutdownDrainMs: e.HSM_CA_SHUTDOWN_DRAIN_MS,
      tlsHandshakeTimeoutMs: e.HSM_CA_TLS_HANDSHAKE_TIMEOUT_MS,
      maxConnections: e.HSM_CA_MAX_CONNECTIONS,
    },
    metrics: { token: e.HSM_CA_METRICS_TOKEN ?? (e.HSM_CA_METRICS_TOKEN_FILE ? readMetricsToken(path.resolve(e.HSM_CA_METRICS_TOKEN_FILE)) : undefined) },
    vault: e.HSM_CA_VAULT_API === "on" ? { mount: e.HSM_CA_VAULT_MOUNT, roles: (parseVaultRoles(e.HSM_CA_VAULT_ROLES) as { roles: Record<string, string> }).roles, caProfile: e.HSM_CA_VAULT_CA_PROFILE } : undefined,
    logLevel: e.HSM_CA_LOG_LEVEL,
  };
}
