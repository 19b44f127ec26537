import type http from "node:http";
import https from "node:https";
import os from "node:os";
import { serve, type ServerType } from "@hono/node-server";
import type { Logger } from "pino";
import { createApiApp, createPublicApp } from "./api/app.ts";
import { ocspFastPathServer } from "./api/ocsp-listener.ts";
import { AuthFailures } from "./api/auth-failures.ts";
import { createRateLimits } from "./policy/rate-limit.ts";
import { SERVER_LIMITS } from "./api/server-limits.ts";
import { capConnections, connectionCap } from "./api/connection-cap.ts";
import { trackConnections, type ConnectionDrain, type DrainResult } from "./api/connection-drain.ts";
import { transcriptDetails } from "./ceremony/transcript-details.ts";
import { withActor } from "./audit/actor.ts";
import { AuditLog, keyUseRecorder } from "./audit/audit-log.ts";
import type { AppContext } from "./api/context.ts";
import { formatTranscript, initHierarchy } from "./ceremony/init-hierarchy.ts";
import { checkCaKeys } from "./ceremony/check-ca-keys.ts";
import type { Config, VaultSettings } from "./config.ts";
import { startControlSocket, type CommandRunner } from "./control/control-socket.ts";
import { Hsm } from "./hsm/hsm.ts";
import { createPrivately, describeRepairs, makeDataDirPrivate } from "./private-data-dir.ts";
import { issuerChainsChanged, loadActiveIssuer, type ActiveIssuer } from "./issuance/issuer.ts";
import { issueServerCertificate } from "./issuance/server-certificate.ts";
import { createLogger } from "./logger.ts";
import { loadAcmeProfiles, loadProfiles } from "./policy/profiles.ts";
import { directoryPaths } from "./acme/context.ts";
import { acmeRoutes } from "./acme/router.ts";
import { sealPlaintextEabKeys } from "./acme/eab-keys.ts";
import type { OwnEndpoints } from "./acme/validation/types.ts";
import { acmeCleanupJob } from "./jobs/acme-cleanup.ts";
import { approvalExpiryJob } from "./jobs/approval-expiry.ts";
import { authFailureWindowsJob } from "./jobs/auth-failure-windows.ts";
import { APPROVED_REQUESTS_JOB, approvedRequestsJob } from "./jobs/approved-requests.ts";
import { auditCheckpointJob } from "./jobs/audit-checkpoint.ts";
import { CRL_PUBLISHING_JOB, crlPublishingJob } from "./jobs/crl-publishing.ts";
import { hierarchyWatchJob } from "./jobs/hierarchy-watch.ts";
import { keyCleanupJob } from "./jobs/key-cleanup.ts";
import { PostgresLeaderLease, soleLeader, type LeaderLease } from "./jobs/leader-lease.ts";
import { listenerCertificateJob } from "./jobs/listener-certificate.ts";
import { ocspPresigningJob } from "./jobs/ocsp-presigning.ts";
import { ocspRespondersJob } from "./jobs/ocsp-responders.ts";
import { revocationWatchJob } from "./jobs/revocation-watch.ts";
import { ROTATION_SCHEDULE_JOB, rotationJobs } from "./jobs/rotation.ts";
import { Scheduler } from "./jobs/scheduler.ts";
import { LOCKS } from "./store/locks.ts";
import { openSessionLock } from "./store/session-lock.ts";
import { openStore, type Store } from "./store/database.ts";
import { writeDatabaseMarker } from "./store/database-marker.ts";
import { Rejection } from "./errors.ts";
import { startRevocationServices, type RevocationServices } from "./revocation/revocation-services.ts";
import { RevocationUrls } from "./revocation/urls.ts";
import { AUDIT_KEY_ALGORITHM } from "./audit/checkpoint.ts";
import { createMetrics, type Metrics } from "./metrics/catalogue.ts";
import { observeHsm } from "./metrics/hsm-observer.ts";
import { lintFailureRecorder } from "./metrics/lint-observer.ts";
import { onLintFailure, setLintEnabled } from "./lint/gate.ts";
import { jobsObserver } from "./metrics/jobs-observer.ts";
import { readStateOnScrape } from "./metrics/scrape-state.ts";
import { authenticateOrCount } from "./api/require-role.ts";
import type { VaultContext } from "./vault/context.ts";
import { acceptListMethod } from "./vault/list-method.ts";
import { vaultReadiness } from "./vault/readiness.ts";
import { checkVaultRoles } from "./vault/roles.ts";
import { vaultRoutes } from "./vault/router.ts";

export interface Service {
  ctx: AppContext;
  /** The HSM itself: the composition root's own (the HTTP layer gets only ctx.keyStatus). For tests and the CLI inside the service. */
  hsm: Hsm;
  revocation: RevocationServices;
  /** Every timer of this process, and whether it leads the leader jobs. */
  jobs: Scheduler;
  /** Re-issues the HTTPS listener's certificate when it is due (checked hourly; exposed for tests). */
  renewServerCertificate(now?: Date): Promise<boolean>;
  httpsUrl: string;
  httpUrl: string;
  /**
   * Stops: /readyz answers 503 at once, the listeners take no new
   * connections, in-flight requests get config.listeners.shutdownDrainMs
   * to finish, every connection left is closed (one log line says what was
   * closed), then the jobs (the lease is given up), the audit log, the
   * database and the HSM.
   */
  close(): Promise<void>;
}

/** What the running service lends the commands sent over its control socket. */
export interface ServiceResources {
  config: Config;
  store(): Promise<Store>;
  hsm(): Hsm;
  /** The base of the CRL/OCSP/caIssuers URLs written into new CA certificates. */
  revocationUrls(): RevocationUrls;
  /** Reloads the issuer and the OCSP responders after a command changed the CA hierarchy. */
  hierarchyChanged(): Promise<void>;
  audit: AuditLog;
  metrics: Metrics;
}

export interface ServiceOptions {
  /**
   * Runs the commands the CLI sends over the control socket, with the
   * service's resources (the entry point hands in the CLI's runner). The
   * socket exists on PGlite only, and only with this; PostgreSQL lets the CLI
   * open the database itself.
   */
  controlCommands?: (resources: ServiceResources) => CommandRunner;
}

/**
 * Wires the parts together: profiles, HSM, database, CA hierarchy, then
 * the HTTPS API, the plain-HTTP listener and the control socket.
 */
export async function startService(
  config: Config,
  log: Logger = createLogger(config.logLevel),
  /** Where a ceremony transcript is printed for the operator (the terminal, when run by the CLI). */
  announce: (text: string) => void = () => {},
  options: ServiceOptions = {},
): Promise<Service> {
  const profiles = loadProfiles(config.profilesDir);
  // Checked with the profile files, before anything is opened.
  const vaultSettings = config.vault && checkVaultRoles(config.vault, profiles);
  // Before anything under the data directory is opened or created (the token, PGlite, the control socket).
  const restoreUmask = createPrivately();
  let hsm: Hsm;
  try {
    const repairs = makeDataDirPrivate(config.dataDir);
    if (repairs.length) {
      log.warn(
        { dataDir: config.dataDir, count: repairs.length, repaired: describeRepairs(repairs) },
        "the data directory was readable or writable by other users: removed their permissions",
      );
    }
    hsm = Hsm.open(config.hsm, config.dataDir);
  } catch (err) {
    restoreUmask();
    throw err;
  }
  hsm.onAvailability((e) =>
    e.available ? log.info({ downMs: e.downMs }, "the HSM is available again") : log.error({ reason: e.reason }, "the HSM is unavailable; reconnecting"),
  );
  const closers: Array<() => Promise<void> | void> = [restoreUmask, () => hsm.close()];
  const closeAll = async () => {
    for (const close of closers.reverse()) await close();
  };
  try {
    if (hsm.pinsGenerated) {
      log.warn(
        { pinFile: config.hsm.pinSource },
        "generated the PINs of the embedded SoftHSM2 token under the data directory (0600). " +
          "This is for trying hsm-ca out: production points HSM_CA_PKCS11_MODULE at its HSM and supplies its own PIN (HSM_CA_PIN_FILE).",
      );
    }
    const store: Store = await openStore({ ...config, bounds: config.databaseBounds });
    closers.push(() => store.close());
    // Tells a CLI run here without DATABASE_URL which database this service uses (src/cli/database-guard.ts).
    try {
      writeDatabaseMarker(config.dataDir, config.databaseUrl);
    } catch (err) {
      // A read-only data directory serves as before; only the CLI's refusal is lost.
      log.warn({ dataDir: config.dataDir, err: (err as Error).message }, "cannot record which database this service uses in the data directory");
    }
    // The audit log: closed (last checkpoint, last entries) after everything pushed later, before the store and the HSM.
    const audit = new AuditLog({ db: store.db, log, checkpoints: { hsm } });
    closers.push(() => audit.stop());
    hsm.onKeyUse(keyUseRecorder(audit, hsm));

    // Metrics: a registry of this service's own; the state gauges are read when scraped.
    const metrics = createMetrics();
    closers.push(observeHsm(metrics, hsm));
    // Lint before sign (docs/lint.md): on unless turned off; every refusal is audited and counted.
    setLintEnabled(config.lint.enabled);
    if (!config.lint.enabled) log.warn("HSM_CA_LINT=off: certificates, CRLs and OCSP responses are signed without the lint gate (unsafe)");
    closers.push(onLintFailure(lintFailureRecorder(audit, metrics)));

    // Background work: one scheduler; the leader jobs run on the one replica that holds the lease (docs/jobs.md).
    const replica = `${os.hostname()}:${process.pid}`;
    const lease: LeaderLease =
      store.kind === "postgres" && config.databaseUrl
        ? new PostgresLeaderLease(
            replica,
            () => openSessionLock(config.databaseUrl!, { lock: LOCKS.jobsLeader, name: replica, timeoutMs: 2 * config.databaseBounds.answerTimeoutMs }),
            log,
          )
        : soleLeader(replica);
    const jobs = new Scheduler({ lease, log, observer: jobsObserver(metrics) });
    const rotationPlan = { remaining: config.rotation.remaining, nextTick: () => jobs.nextRun(ROTATION_SCHEDULE_JOB) };
    readStateOnScrape(metrics, { hsm: hsm.status, db: store.db, queueLimit: config.hsm.queueLimit, rotation: rotationPlan, now: () => new Date() });

    let issuer: ActiveIssuer | undefined;
    let revocation: RevocationServices | undefined;
    const currentIssuer = () => {
      if (!issuer) throw new Rejection("ca-not-ready", "no active issuing CA: run `hsm-ca init`, or rotate to a new intermediate");
      return issuer;
    };
    const rateLimits = createRateLimits(config.rateLimits);
    // Its open windows' summaries are written at close, before the audit log stops.
    const authFailures = new AuthFailures(config.authFailures, audit);
    closers.push(() => authFailures.stop());
    let stopping = false;
    // Set once the approved-requests job is wired below; an approval before that waits for its first tick.
    let carryOutApproved = () => {};
    const ctx: AppContext = {
      store,
      keyStatus: hsm.status,
      profiles,
      issuer: currentIssuer,
      ocsp: () => revocation?.ocsp,
      log,
      audit,
      approvals: config.approvals,
      rateLimits,
      authFailures,
      metrics,
      caChangeApproved: () => carryOutApproved(),
      stopping: () => stopping,
    };
    const cap = connectionCap(config.listeners.maxConnections);
    if (cap === undefined) log.warn("cannot read this process's descriptor limit: connections are not capped (set HSM_CA_MAX_CONNECTIONS)");
    const drains: ConnectionDrain[] = [];
    /** Capped, and tracked for the drain at shutdown. */
    const guard = (listener: string, server: ServerType): ServerType => {
      capConnections(server, cap, (refused) =>
        log.warn({ listener, maxConnections: cap, refused }, "a listener is at its connection cap: refusing new connections"),
      );
      drains.push(trackConnections(server as http.Server));
      return server;
    };
    const metricsToken = config.metrics.token;

    // Plain HTTP first: its address is part of every certificate (CRL and OCSP URLs).
    const httpServer = await listen(
      guard(
        "http",
        serve({
          fetch: createPublicApp(ctx, { metricsToken }).fetch,
          hostname: config.http.host,
          port: config.http.port,
          serverOptions: SERVER_LIMITS,
          createServer: ocspFastPathServer(() => revocation?.ocsp, ctx),
        }),
      ),
    );
    closers.push(() => closeServer(httpServer));
    // Where the CA answers, for the http-01 validator to refuse; the HTTPS listener joins when it starts.
    const ownEndpoints: OwnEndpoints = {
      listeners: [boundAddress(httpServer)],
      urls: [config.publicUrl, config.publicHttpUrl].filter((u): u is string => u !== undefined),
    };
    const httpUrl = `http://${hostForUrl(config.http.host)}:${portOf(httpServer)}`;
    const publishing = { urls: new RevocationUrls(config.publicHttpUrl ?? httpUrl), partitions: config.revocation.crlPartitions };

    if (config.autoInit) {
      const transcript = await withActor("system:init", () => initHierarchy(hsm, store.db, config.hierarchy, publishing.urls));
      if (transcript) {
        audit.record({ kind: "admin.init", actor: "system:init", details: transcriptDetails(transcript) });
        log.info({ transcript }, "created the CA hierarchy");
        announce(formatTranscript(transcript));
      }
    }
    for (const warning of await checkCaKeys(hsm, store.db)) log.warn(warning);
    issuer = await loadActiveIssuer(store.db, hsm);
    const reloadHierarchy = async () => {
      // The new CA's keys were made by another process: tpm2-pkcs11 sees them only once re-read.
      await hsm.rereadKeys().catch(() => {});
      issuer = await loadActiveIssuer(store.db, hsm).catch(() => undefined);
      await revocation?.ocsp.load();
    };
    revocation = await startRevocationServices({ config, db: store.db, hsm, log, publishing, caRevoked: reloadHierarchy, leading: () => jobs.leading, metrics });
    closers.push(() => revocation?.stop());
    const { crls, ocsp, watcher } = revocation;
    jobs.register(crlPublishingJob(crls));
    jobs.register(ocspPresigningJob(ocsp));
    jobs.register(ocspRespondersJob(ocsp));
    jobs.register(revocationWatchJob(watcher));
    jobs.onLeadership((leading) => {
      if (leading) withActor("system:revocation", () => revocation?.tookLead());
    });

    // Rotation: by the leader's schedule, by `hsm-ca rotate` or by an approval; every replica
    // notices a new active intermediate within seconds and switches to it without a restart.
    const hierarchyWatch = hierarchyWatchJob({
      db: store.db,
      log,
      issuingCaId: () => issuer?.row.id,
      reload: reloadHierarchy,
      publishCrls: async () => void (await jobs.runNow(CRL_PUBLISHING_JOB)),
      chainsChanged: async () => issuer !== undefined && (await issuerChainsChanged(store.db, issuer)),
    });
    jobs.register(hierarchyWatch);
    for (const job of rotationJobs({ db: store.db, hsm, log, config, urls: () => publishing.urls, onRotated: hierarchyWatch.switchIfRotated })) jobs.register(job);
    jobs.register(keyCleanupJob({ db: store.db, hsm, log, approvals: { required: config.approvals.caChange, ttlMs: config.approvals.ttlMs } }));
    jobs.register(approvalExpiryJob(store.db));
    jobs.register(authFailureWindowsJob(authFailures));
    if (config.audit.checkpointIntervalMs > 0) jobs.register(auditCheckpointJob(audit, config.audit.checkpointIntervalMs));
    // Approved CA changes (rotate, destroy-key): decisions only record them; this job carries them out.
    jobs.register(
      approvedRequestsJob({
        db: store.db,
        hsm,
        profiles,
        issuer: currentIssuer,
        revocation: publishing,
        log,
        now: () => new Date(),
        hierarchyChanged: hierarchyWatch.switchIfRotated,
        audit,
        metrics,
      }),
    );
    carryOutApproved = () => void jobs.runNow(APPROVED_REQUESTS_JOB);
    closers.push(() => {
      carryOutApproved = () => {};
    });

    // EAB HMAC keys stored in clear by earlier versions are sealed under the HSM's wrapping key before anything reads them.
    const eabSealed = await withActor("system:eab-sealing", () => sealPlaintextEabKeys(store.db, hsm));
    if (eabSealed > 0) log.info({ keys: eabSealed }, "sealed the EAB HMAC keys stored in clear under the HSM's wrapping key");
    const acmeProfiles = loadAcmeProfiles(config.acme.profilesDir, profiles);
    const paths = directoryPaths(acmeProfiles);
    const acme = acmeRoutes({
      db: store.db,
      directories: new Map(
        [...acmeProfiles].map(([name, p]) => [name, { profile: p, certificateProfile: profiles.get(p.certificateProfile)!, basePath: paths.get(name)! }]),
      ),
      profiles,
      issuer: currentIssuer,
      revocation: publishing,
      validation: {
        httpPort: config.acme.http01Port,
        tlsAlpnPort: config.acme.tlsAlpn01Port,
        resolvers: config.acme.resolvers,
        timeoutMs: config.acme.validationTimeoutMs,
        maxRedirects: 10,
        ownEndpoints,
      },
      eabSealer: hsm,
      publicUrl: config.publicUrl,
      log,
      now: () => new Date(),
      audit,
      rateLimits,
      metrics,
    });
    closers.push(() => acme.runner.drain());
    jobs.register(acmeCleanupJob(store.db, log));

    if (store.kind === "pglite" && options.controlCommands) {
      const run = options.controlCommands({
        config,
        store: async () => store,
        hsm: () => hsm,
        revocationUrls: () => publishing.urls,
        hierarchyChanged: reloadHierarchy,
        audit,
        metrics,
      });
      const control = await startControlSocket(config.dataDir, async (argv) => {
        const result = await run(argv);
        log.info({ command: argv[0], code: result.code }, "CLI command run over the control socket");
        return result;
      });
      closers.push(() => new Promise<void>((resolve) => control.close(() => resolve())));
    }

    /** The Vault-compatible API's context: REST's parts, and REST's token authentication with its failure counting. */
    const vaultContext = (settings: VaultSettings): VaultContext => ({
      db: store.db,
      profiles,
      issuer: currentIssuer,
      revocation: publishing,
      audit,
      metrics,
      rateLimits,
      log,
      now: () => new Date(),
      settings,
      authenticateApiToken: (c, secret, reason) => authenticateOrCount(ctx, c, secret, reason),
      ready: () => vaultReadiness({ hsm: hsm.status, ping: () => store.ping(), stopping: () => stopping }),
    });
    const tls = await withActor("system:server-certificate", () => issueServerCertificate(store.db, currentIssuer(), config.serverNames, publishing));
    const vault = vaultSettings && vaultRoutes(vaultContext(vaultSettings));
    const apiApp = createApiApp(ctx, {
      acme: acmeProfiles.size ? acme.app : undefined,
      revocation: publishing,
      metricsToken,
      dashboard: {
        rotation: rotationPlan,
        jobs: () => jobs.status(),
        queueLimit: config.hsm.queueLimit,
        auditPublicKey: async (label) => (hsm.hasKey(label) ? Buffer.from(await hsm.publicKeySpki(label, AUDIT_KEY_ALGORITHM)) : undefined),
      },
      vault,
    });
    const httpsServer = await listen(
      guard(
        "https",
        serve({
          fetch: apiApp.fetch,
          hostname: config.https.host,
          port: config.https.port,
          createServer: https.createServer,
          // handshakeTimeout: a connection that never completes TLS is not an HTTP connection yet, so no HTTP timeout applies to it.
          serverOptions: { ...SERVER_LIMITS, handshakeTimeout: config.listeners.tlsHandshakeTimeoutMs, key: tls.keyPem, cert: tls.certPem },
        }),
      ),
    );
    closers.push(() => closeServer(httpsServer));
    if (vault) acceptListMethod(httpsServer as https.Server, apiApp.fetch, log);
    ownEndpoints.listeners.push(boundAddress(httpsServer));

    const listenerCertificate = listenerCertificateJob({
      server: httpsServer as https.Server,
      current: tls,
      issue: () => withActor("system:server-certificate", () => issueServerCertificate(store.db, currentIssuer(), config.serverNames, publishing)),
      log,
    });
    jobs.register(listenerCertificate);

    // The schedules start last, when everything they use is there; the first CRLs are published before this returns.
    closers.push(() => jobs.stop());
    await jobs.start();

    const httpsUrl = `https://${hostForUrl(config.https.host)}:${portOf(httpsServer)}`;
    log.info({ https: httpsUrl, http: httpUrl, database: store.kind, tokenLabel: hsm.status.tokenLabel }, "hsm-ca is serving");
    let closing: Promise<void> | undefined;
    const close = () =>
      (closing ??= (async () => {
        stopping = true;
        const started = Date.now();
        const results = await Promise.all(drains.map((d) => d.drain(config.listeners.shutdownDrainMs)));
        const sum = (key: keyof DrainResult) => results.reduce((n, r) => n + r[key], 0);
        log.info(
          { connections: sum("connections"), inFlight: sum("inFlight"), cut: sum("cut"), drainMs: Date.now() - started },
          sum("cut")
            ? "stopped serving: requests unanswered at the drain limit were cut, every other connection closed"
            : "stopped serving: in-flight requests answered, idle and half-open connections closed",
        );
        await closeAll();
      })());
    return { ctx, hsm, httpsUrl, httpUrl, revocation: revocation!, jobs, renewServerCertificate: listenerCertificate.renew, close };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

function listen(server: ServerType): Promise<ServerType> {
  return new Promise((resolve, reject) => {
    if (server.listening) return resolve(server);
    server.once("listening", () => resolve(server));
    server.once("error", reject);
  });
}

function closeServer(server: ServerType): Promise<void> {
  return new Promise((resolve) => {
    (server as http.Server).closeAllConnections?.();
    server.close(() => resolve());
  });
}

function boundAddress(server: ServerType): { address: string; port: number } {
  const addr = server.address();
  return typeof addr === "object" && addr ? { address: addr.address, port: addr.port } : { address: "::", port: 0 };
}

function portOf(server: ServerType): number {
  const addr = server.address();
  return typeof addr === "object" && addr ? addr.port : 0;
}

function hostForUrl(host: string): string {
  if (host === "0.0.0.0" || host === "::") return "localhost";
  return host.includes(":") ? `[${host}]` : host;
}
