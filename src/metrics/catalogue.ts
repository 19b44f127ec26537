import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

/**
 * Every metric the service exports, in one place: names, help texts and
 * labels (docs/observability.md, "Metrics", lists the same). Each service has a registry of
 * its own, not prom-client's global one: tests run several services in one
 * process, and two services must never add up each other's counts.
 *
 * Label values are bounded sets (profiles, CA ids, key labels, route
 * patterns, reasons): never a serial, a raw path, a token or anything a
 * client can make up freely.
 */
export function createMetrics() {
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry });
  // The state gauges are set by one function per scrape, however many of them are collected.
  let readState: () => Promise<void> = async () => {};
  let reading: Promise<void> | undefined;
  const collect = () => (reading ??= readState().finally(() => (reading = undefined)));

  const metrics = {
    registry,
    /** Sets what fills the state gauges; it runs once per scrape, before they are read. */
    onScrape(read: () => Promise<void>): void {
      readState = read;
    },

    // ---- the HSM (fed by hsm.onKeyUse and read from the session pool at scrape time) ----
    hsmOperationSeconds: new Histogram({
      name: "hsmca_hsm_operation_duration_seconds",
      help: "Time a key operation took on the HSM (session held), by key label and operation (sign, generate, destroy, encrypt, decrypt).",
      labelNames: ["key_label", "operation"] as const,
      // SoftHSM2 signs in well under a millisecond; network HSMs take tens of milliseconds; RSA-4096 generation takes seconds.
      buckets: [0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    }),
    hsmOperations: new Counter({
      name: "hsmca_hsm_operations_total",
      help: "Key operations that reached the HSM, by key label, operation and result (ok, error).",
      labelNames: ["key_label", "operation", "result"] as const,
      registers,
    }),
    hsmUnavailable: new Counter({
      name: "hsmca_hsm_unavailable_total",
      help: "Times the HSM became unavailable (sessions lost, token gone, login refused).",
      registers,
    }),

    // ---- what the CA does ----
    issuance: new Counter({
      name: "hsmca_issuance_total",
      help: "Certificate requests that reached issuance, by profile, outcome (issued, refused, failed, pending_approval) and source (rest, acme, approval, cli, vault).",
      labelNames: ["profile", "outcome", "source"] as const,
      registers,
    }),
    lintFailures: new Counter({
      name: "hsmca_lint_failures_total",
      help: "Objects the lint gate refused before a CA key signed them (nothing was signed), by rule and kind (certificate, crl, ocsp-response).",
      labelNames: ["rule", "kind"] as const,
      registers,
    }),
    revocations: new Counter({
      name: "hsmca_revocations_total",
      help: "Certificates revoked by this process, by RFC 5280 reason and source (api, acme, cli); repeated revocations of a revoked certificate are not counted.",
      labelNames: ["reason", "source"] as const,
      registers,
    }),
    ocspRequests: new Counter({
      name: "hsmca_ocsp_requests_total",
      help: "OCSP requests answered, by answer: good, revoked, unknown, or the error status (malformedRequest, unauthorized, tryLater).",
      labelNames: ["status"] as const,
      registers,
    }),
    ocspCacheHits: new Counter({
      name: "hsmca_ocsp_cache_hits_total",
      help: "OCSP requests answered with a pre-signed response, by where it was found (memory, database).",
      labelNames: ["tier"] as const,
      registers,
    }),
    ocspCacheMisses: new Counter({
      name: "hsmca_ocsp_cache_misses_total",
      help: "OCSP requests (without a nonce) that had to be signed while the client waited.",
      registers,
    }),
    // ---- OCSP upkeep (set by the leader's pre-signing, src/revocation/ocsp-upkeep.ts; 0 on followers) ----
    ocspBacklog: new Gauge({
      name: "hsmca_ocsp_backlog",
      help: "OCSP responses due (missing, past half their life, or of a revoked certificate still saying good), as the leader last counted them (capped at 1,000,000).",
      registers,
    }),
    ocspBacklogOldestSeconds: new Gauge({
      name: "hsmca_ocsp_backlog_oldest_seconds",
      help: "How long the oldest due OCSP response has been due (0: none due). A stored response expires unrefreshed when this reaches half the response lifetime.",
      registers,
    }),
    ocspPresignRate: new Gauge({
      name: "hsmca_ocsp_presign_rate",
      help: "OCSP signatures per second the pre-signing aims at now: enough to refresh every stored response within half its life and clear the backlog, capped by HSM_CA_OCSP_SIGN_RATE and HSM_CA_OCSP_HSM_SHARE of the measured signing capacity.",
      registers,
    }),
    ocspSigningCapacity: new Gauge({
      name: "hsmca_ocsp_signing_capacity",
      help: "OCSP responses per second this process measured it can build, lint and sign when unpaced (0: not measured yet).",
      registers,
    }),
    ocspPresigned: new Counter({
      name: "hsmca_ocsp_presigned_total",
      help: "OCSP responses signed and stored by the background pre-signing.",
      registers,
    }),

    // ---- HTTP ----
    httpRequests: new Counter({
      name: "hsmca_http_requests_total",
      help: "HTTP requests, by listener (https, http), method, route pattern and status code.",
      labelNames: ["listener", "method", "route", "status"] as const,
      registers,
    }),
    httpRequestSeconds: new Histogram({
      name: "hsmca_http_request_duration_seconds",
      help: "Time from a request's arrival until its response headers, by listener, method and route pattern.",
      labelNames: ["listener", "method", "route"] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    rateLimited: new Counter({
      name: "hsmca_rate_limited_total",
      help: "Requests refused with 429 by a request rate limit, by limiter (api_token, acme_account, auth_failure).",
      labelNames: ["limiter"] as const,
      registers,
    }),

    // ---- background jobs (src/jobs; fed by src/metrics/jobs-observer.ts) ----
    jobsLeader: new Gauge({
      name: "hsmca_jobs_leader",
      help: "1 while this replica (hostname:pid) holds the jobs lease and runs the leader jobs, else 0. Summed over the replicas: 1.",
      labelNames: ["replica"] as const,
      registers,
    }),
    jobLastRun: new Gauge({
      name: "hsmca_job_last_run_timestamp_seconds",
      help: "When this process last started a run of each job (Unix time), by job and result (ok, error).",
      labelNames: ["job", "result"] as const,
      registers,
    }),
    jobRuns: new Counter({
      name: "hsmca_job_runs_total",
      help: "Runs of each job in this process, by job and result (ok, error); a follower does not run the leader jobs.",
      labelNames: ["job", "result"] as const,
      registers,
    }),

    // ---- state, read when scraped (src/metrics/scrape-state.ts, src/metrics/hsm-observer.ts) ----
    hsmUp: new Gauge({ name: "hsmca_hsm_up", help: "1 when the HSM answers and its sessions are logged in, else 0.", registers, collect }),
    hsmSessions: new Gauge({ name: "hsmca_hsm_sessions", help: "PKCS#11 sessions in the pool (HSM_CA_HSM_SESSIONS).", registers, collect }),
    hsmSessionsInUse: new Gauge({ name: "hsmca_hsm_sessions_in_use", help: "Sessions lent out to an operation right now.", registers, collect }),
    hsmQueueWaiting: new Gauge({ name: "hsmca_hsm_queue_waiting", help: "Callers waiting for a free session (the HSM queue depth).", registers, collect }),
    hsmQueueLimit: new Gauge({ name: "hsmca_hsm_queue_limit", help: "Callers that may wait before hsm-busy (HSM_CA_HSM_QUEUE_LIMIT).", registers, collect }),
    databaseUp: new Gauge({ name: "hsmca_database_up", help: "1 when the scrape's database reads succeeded, else 0 (and the gauges read from the database are absent, or NaN).", registers, collect }),
    caInfo: new Gauge({
      name: "hsmca_ca_info",
      help: "One series per CA certificate (value 1): its role, state, subject and key label.",
      labelNames: ["ca_id", "role", "status", "subject", "key_label"] as const,
      registers,
      collect,
    }),
    caExpirySeconds: new Gauge({
      name: "hsmca_ca_expiry_seconds",
      help: "Seconds until each CA certificate whose key still exists expires (negative: expired).",
      labelNames: ["ca_id", "role", "status"] as const,
      registers,
      collect,
    }),
    rotationNextSeconds: new Gauge({
      name: "hsmca_rotation_next_seconds",
      help: "Seconds until the next rotation of the issuing intermediate: the next tick of HSM_CA_ROTATION_SCHEDULE (trigger=schedule), and when less than HSM_CA_ROTATION_REMAINING of its life is left (trigger=remaining; negative: overdue).",
      labelNames: ["trigger"] as const,
      registers,
      collect,
    }),
    intermediateAwaitingSignatureSeconds: new Gauge({
      name: "hsmca_intermediate_awaiting_signature_seconds",
      help: "Below an external root: seconds since the next intermediate's key and CSR were made and began to wait for that root's signature (hsm-ca ceremony import-intermediate); absent when none waits.",
      labelNames: ["pending_id", "subject", "reason"] as const,
      registers,
      collect,
    }),
    crlAgeSeconds: new Gauge({
      name: "hsmca_crl_age_seconds",
      help: "Seconds since thisUpdate of the latest stored CRL, per issuing CA and kind (full, delta); with partitions, the oldest partition.",
      labelNames: ["ca_id", "kind"] as const,
      registers,
      collect,
    }),
    crlNextUpdateSeconds: new Gauge({
      name: "hsmca_crl_next_update_seconds",
      help: "Seconds until nextUpdate of the latest stored CRL, per issuing CA and kind; with partitions, the soonest (negative: relying parties see a stale CRL).",
      labelNames: ["ca_id", "kind"] as const,
      registers,
      collect,
    }),
    approvalsPending: new Gauge({
      name: "hsmca_approval_requests_pending",
      help: "Approval requests waiting for admins, by kind (issue, rotate, destroy-key).",
      labelNames: ["kind"] as const,
      registers,
      collect,
    }),
    auditCheckpointAgeSeconds: new Gauge({
      name: "hsmca_audit_checkpoint_age_seconds",
      help: "Seconds since the last signed audit checkpoint; before the first one, since the first audit entry (0 for an empty log).",
      registers,
      collect,
    }),
    auditEntriesSinceCheckpoint: new Gauge({
      name: "hsmca_audit_entries_since_checkpoint",
      help: "Audit log entries written after the last signed checkpoint.",
      registers,
      collect,
    }),
  };
  // Series whose label values are known in advance start at 0, so that rate() sees their first increase.
  for (const tier of ["memory", "database"]) metrics.ocspCacheHits.inc({ tier }, 0);
  for (const limiter of ["api_token", "acme_account", "auth_failure"]) metrics.rateLimited.inc({ limiter }, 0);
  return metrics;
}

export type Metrics = ReturnType<typeof createMetrics>;
