import type { Child } from "hono/jsx";
import { raw } from "hono/html";
import type { Principal } from "../../auth/api-tokens.ts";
import type { KeyProvenance } from "../../hsm/key-manager.ts";
import type { CertificateSummary } from "../../store/recent-certificates.ts";
import { day, relative, utc } from "./format.ts";
import type { CaView, JobsView, KeyView, Overview } from "./overview.ts";

/**
 * The dashboard's HTML, server-rendered with hono/jsx, which escapes every
 * value it is given. No script at all; the only forms are login and logout.
 * The one raw string is the constant style sheet below.
 */
const CSS = `
:root { color-scheme: light; --ink: #1d2430; --muted: #5d6878; --line: #d8dde5; --bg: #f5f7fa; --ok: #1f7a44; --bad: #b3261e; --warn: #9a6700; --bar: #3b6fb6; --bar-old: #9aa8bb; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, sans-serif; color: var(--ink); background: var(--bg); }
header { display: flex; align-items: center; gap: 1rem; padding: .75rem 1.5rem; background: #1d2430; color: #fff; }
header h1 { font-size: 1.1rem; margin: 0; flex: 1; }
header form { margin: 0; }
main { padding: 1rem 1.5rem 3rem; display: grid; gap: 1rem; grid-template-columns: repeat(auto-fit, minmax(34rem, 1fr)); }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .75rem 1rem 1rem; min-width: 0; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 1rem; margin: .25rem 0 .75rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: .8rem; text-transform: uppercase; letter-spacing: .03em; }
code, .mono { font-family: ui-monospace, monospace; font-size: .85em; word-break: break-all; }
.muted { color: var(--muted); }
.badge { display: inline-block; padding: 0 .45rem; border-radius: 999px; font-size: .75rem; font-weight: 600; border: 1px solid currentColor; }
.ok { color: var(--ok); } .bad { color: var(--bad); } .warn { color: var(--warn); }
.ca { display: grid; grid-template-columns: minmax(18rem, 2fr) 3fr; gap: 1rem; padding: .5rem 0; border-bottom: 1px solid var(--line); }
.ca.intermediate .who { padding-left: 1.25rem; border-left: 3px solid var(--line); }
.track { position: relative; height: 1.4rem; margin-top: .4rem; background: #eef1f5; border-radius: 3px; }
.bar { position: absolute; top: .2rem; bottom: .2rem; background: var(--bar); border-radius: 3px; }
.bar.retired, .bar.revoked { background: var(--bar-old); }
.now { position: absolute; top: -.2rem; bottom: -.2rem; width: 2px; background: var(--bad); }
.due { position: absolute; top: -.2rem; bottom: -.2rem; width: 2px; background: var(--warn); }
.axis { display: flex; justify-content: space-between; font-size: .75rem; color: var(--muted); }
.legend span { margin-right: 1rem; }
.legend i { display: inline-block; width: .8rem; height: .8rem; vertical-align: -1px; margin-right: .3rem; }
.legend i.now { position: static; background: var(--bad); width: 2px; }
.legend i.due { position: static; background: var(--warn); width: 2px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; }
.login { max-width: 28rem; margin: 10vh auto; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 1.5rem; }
.login input { width: 100%; padding: .5rem; font: inherit; margin: .5rem 0 1rem; }
button { font: inherit; padding: .35rem .9rem; cursor: pointer; }
.error { color: var(--bad); font-weight: 600; }
`;

const CSP = (nonce: string) =>
  `default-src 'none'; style-src 'nonce-${nonce}'; style-src-attr 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`;

/** Headers of every dashboard page: no scripts, no framing, no caching of what an auditor saw. */
export function pageHeaders(nonce: string): Record<string, string> {
  return {
    "content-security-policy": CSP(nonce),
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
  };
}

function Layout(props: { title: string; nonce: string; children?: Child }) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{props.title}</title>
        <style nonce={props.nonce}>{raw(CSS)}</style>
      </head>
      <body>{props.children}</body>
    </html>
  );
}

export function LoginPage(props: { nonce: string; error?: string }) {
  return (
    <Layout title="hsm-ca dashboard: sign in" nonce={props.nonce}>
      <form class="login" method="post" action="/dashboard/login">
        <h1>hsm-ca dashboard</h1>
        <p class="muted">Sign in with an API token of role admin or auditor. It is checked once; the browser keeps only a signed session cookie for 30 minutes.</p>
        {props.error ? (
          <p class="error" role="alert">
            {props.error}
          </p>
        ) : null}
        <label for="token">API token</label>
        <input id="token" name="token" type="password" autocomplete="off" required />
        <button type="submit">Sign in</button>
      </form>
    </Layout>
  );
}

export function OverviewPage(props: { nonce: string; principal: Principal; overview: Overview }) {
  const o = props.overview;
  return (
    <Layout title="hsm-ca dashboard" nonce={props.nonce}>
      <header>
        <h1>hsm-ca dashboard</h1>
        <span>
          token <code>{props.principal.tokenId}</code> ({props.principal.role}) · {utc(o.now)}
        </span>
        <form method="post" action="/dashboard/logout">
          <button type="submit">Log out</button>
        </form>
      </header>
      <main>
        <Hierarchy o={o} />
        <Rotation o={o} />
        <HsmHealth o={o} />
        <AuditChain o={o} />
        <Jobs o={o} />
        <Approvals o={o} />
        <Issued rows={o.issued} now={o.now} />
        <Revoked rows={o.revoked} />
      </main>
    </Layout>
  );
}

function Hierarchy({ o }: { o: Overview }) {
  return (
    <section id="hierarchy" class="wide">
      <h2>CA hierarchy</h2>
      <div class="ca">
        <div class="legend muted">
          <span>
            <i class="now" />
            now
          </span>
          <span>
            <i class="due" />
            rotation due
          </span>
        </div>
        <div class="axis">
          <span>{day(o.timeline.start)}</span>
          <span>{day(o.timeline.end)}</span>
        </div>
      </div>
      {o.cas.map((ca) => (
        <CaRow ca={ca} now={o.timeline.now} at={o.now} />
      ))}
    </section>
  );
}

function CaRow({ ca, now, at }: { ca: CaView; now: number; at: Date }) {
  const r = ca.row;
  const state = r.keyDestroyedAt ? "key destroyed" : r.status;
  const tone = r.status === "active" ? "ok" : r.status === "revoked" ? "bad" : "muted";
  return (
    <div class={`ca ${r.role}`} data-ca-id={String(r.id)}>
      <div class="who">
        <div>
          <strong>{r.role === "root" ? "Root" : "Intermediate"}</strong> <span class={`badge ${tone}`}>{state}</span>
        </div>
        <div class="subject">{r.subject}</div>
        <div class="muted">
          serial <code>{r.serial}</code> · key {r.keyOrigin === "external" ? "external" : <code>{r.keyLabel}</code>} · {r.keyAlgorithm}
        </div>
        <div class="muted">
          {utc(r.notBefore)} → {utc(r.notAfter)} (expires {relative(r.notAfter, at)})
        </div>
      </div>
      {r.keyDestroyedAt ? (
        <div class="muted">key destroyed {utc(r.keyDestroyedAt)}</div>
      ) : (
        <div class="track" title={`${utc(r.notBefore)} to ${utc(r.notAfter)}`}>
          <div class={`bar ${r.status}`} style={`left:${ca.bar.left.toFixed(2)}%;width:${ca.bar.width.toFixed(2)}%`} />
          {ca.rotationMark !== undefined ? <div class="due" style={`left:${ca.rotationMark.toFixed(2)}%`} /> : null}
          <div class="now" style={`left:${now.toFixed(2)}%`} />
        </div>
      )}
    </div>
  );
}

function Rotation({ o }: { o: Overview }) {
  const r = o.rotation;
  return (
    <section id="rotation">
      <h2>Rotation</h2>
      <dl>
        <dt>Schedule</dt>
        <dd>{r.nextTick ? `next tick ${utc(r.nextTick)} (${relative(r.nextTick, o.now)})` : "no HSM_CA_ROTATION_SCHEDULE"}</dd>
        <dt>By remaining life</dt>
        <dd>
          {r.rule && r.dueAt ? (
            <span class={r.dueAt <= o.now ? "warn" : ""}>
              {r.rule}: due {utc(r.dueAt)} ({relative(r.dueAt, o.now)})
            </span>
          ) : r.rule ? (
            `${r.rule}; no active intermediate`
          ) : (
            "off"
          )}
        </dd>
        <dt>Next rotation</dt>
        <dd>
          <strong>{nextRotation(r) ? `${utc(nextRotation(r)!)} (${relative(nextRotation(r)!, o.now)})` : "none planned"}</strong>
        </dd>
        {r.awaitingSignature ? (
          <>
            <dt>Awaiting signature</dt>
            <dd id="awaiting-signature">
              <span class="warn">
                {r.awaitingSignature.subject}: waiting for the external root's signature since {utc(r.awaitingSignature.since)} ({relative(r.awaitingSignature.since, o.now)})
              </span>
              <div class="muted">
                key <code>{r.awaitingSignature.keyLabel}</code> · {r.awaitingSignature.reason} · CSR: <code>hsm-ca ceremony pending-csr</code>, then <code>hsm-ca ceremony import-intermediate</code>
              </div>
            </dd>
          </>
        ) : null}
      </dl>
    </section>
  );
}

function nextRotation(r: Overview["rotation"]): Date | undefined {
  const dates = [r.nextTick, r.dueAt].filter((d): d is Date => d !== undefined);
  return dates.length ? new Date(Math.min(...dates.map((d) => d.getTime()))) : undefined;
}

function HsmHealth({ o }: { o: Overview }) {
  const h = o.hsm;
  return (
    <section id="hsm">
      <h2>HSM</h2>
      <dl>
        <dt>Health</dt>
        <dd>{h.health.ok ? <span class="badge ok">ok</span> : <span class="badge bad">down: {h.health.detail}</span>}</dd>
        <dt>Token</dt>
        <dd>
          <code>{h.tokenLabel}</code>
        </dd>
        <dt>Sessions</dt>
        <dd>
          {h.pool.inUse} of {h.pool.size} in use · {h.pool.waiting} waiting (limit {h.queueLimit})
        </dd>
      </dl>
      <h2>Key provenance</h2>
      <table>
        <thead>
          <tr>
            <th>Key</th>
            <th>For</th>
            <th>Attributes</th>
          </tr>
        </thead>
        <tbody>
          {o.keys.map((k) => (
            <KeyRow k={k} />
          ))}
        </tbody>
      </table>
    </section>
  );
}

function KeyRow({ k }: { k: KeyView }) {
  return (
    <tr>
      <td>
        <code>{k.label}</code>
      </td>
      <td>{k.purpose}</td>
      <td>{k.provenance ? <Provenance p={k.provenance} /> : <span class="warn">{k.error}</span>}</td>
    </tr>
  );
}

/** The attributes that say a key was made on the token and cannot leave it; any other value is flagged. */
function Provenance({ p }: { p: KeyProvenance }) {
  const flags: Array<[string, boolean, boolean]> = [
    ["sensitive", p.sensitive, true],
    ["alwaysSensitive", p.alwaysSensitive, true],
    ["extractable", p.extractable, false],
    ["neverExtractable", p.neverExtractable, true],
    ["local", p.local, true],
  ];
  return (
    <span>
      {flags.map(([name, value, wanted]) => (
        <span class={value === wanted ? "ok" : "bad"}>
          {name}={String(value)}{" "}
        </span>
      ))}
    </span>
  );
}

function AuditChain({ o }: { o: Overview }) {
  const a = o.audit;
  return (
    <section id="audit">
      <h2>Audit chain</h2>
      {"error" in a ? (
        <p class="bad">cannot check the audit log: {a.error}</p>
      ) : (
        <dl>
          <dt>Status</dt>
          <dd>
            {a.ok ? <span class="badge ok">intact</span> : <span class="badge bad">broken</span>} {a.problem ? <span class="bad">{a.problem}</span> : null}
            {a.partial ? <span class="warn"> (only the first {a.entriesChecked} entries after the checkpoint were checked)</span> : null}
          </dd>
          <dt>Last checkpoint</dt>
          <dd>
            {a.checkpoint ? (
              <span>
                seq {a.checkpoint.seq}, signed {utc(a.checkpoint.at)} ({relative(a.checkpoint.at, o.now)}) by <code>{a.checkpoint.keyLabel}</code>
              </span>
            ) : (
              "none yet"
            )}
          </dd>
          <dt>Checked</dt>
          <dd>
            {a.entriesChecked} entries {a.checkpoint ? "from the checkpoint" : "from seq 1"} to seq {a.head?.seq ?? 0}, at {utc(a.checkedAt)}
          </dd>
        </dl>
      )}
      <p class="muted">Entries before the last checkpoint are vouched for by its signature; `hsm-ca audit verify` checks the whole chain.</p>
    </section>
  );
}

function Jobs({ o }: { o: Overview }) {
  const j = o.jobs;
  return (
    <section id="jobs" class="wide">
      <h2>Background jobs</h2>
      {"error" in j ? (
        <p class="bad">cannot read the jobs: {j.error}</p>
      ) : (
        <>
          <dl>
            <dt>This replica</dt>
            <dd>
              <code>{j.replica}</code> {j.leading ? <span class="badge ok">leader</span> : <span class="badge">follower</span>}
            </dd>
            <dt>Leader</dt>
            <dd>{j.leader ? <code data-leader={j.leader}>{j.leader}</code> : <span class="warn">none right now (another replica takes over within seconds)</span>}</dd>
          </dl>
          <table>
            <thead>
              <tr>
                <th>Job</th>
                <th>Runs on</th>
                <th>Schedule</th>
                <th>Last run here</th>
                <th>Result</th>
              </tr>
            </thead>
            <tbody>
              {j.jobs.map((job) => (
                <JobRow job={job} leading={j.leading} now={o.now} />
              ))}
            </tbody>
          </table>
          <p class="muted">Each replica shows its own runs: the leader jobs run on the leader only.</p>
        </>
      )}
    </section>
  );
}

function JobRow({ job, leading, now }: { job: JobsView["jobs"][number]; leading: boolean; now: Date }) {
  const r = job.lastRun;
  const notHere = job.runsOn === "leader" && !leading;
  return (
    <tr data-job={job.name}>
      <td>
        <code>{job.name}</code>
      </td>
      <td>{job.runsOn === "leader" ? "the leader" : "every replica"}</td>
      <td>
        {job.schedule}
        {job.nextRun && !notHere ? <div class="muted">next {aboutNow(job.nextRun, now)}</div> : null}
      </td>
      <td>{r ? `${utc(r.at)} (${aboutNow(r.at, now)}, ${r.ms} ms)` : notHere ? <span class="muted">runs on the leader</span> : "not yet"}</td>
      <td>
        {job.running ? <span class="badge">running</span> : null}{" "}
        {r ? r.result === "ok" ? <span class="badge ok">ok</span> : <span class="badge bad" title={r.error}>error: {r.error}</span> : null}
      </td>
    </tr>
  );
}

/** relative(), for jobs that run every second or two: "now" rather than "in now" or "now ago". */
function aboutNow(d: Date, now: Date): string {
  return Math.abs(d.getTime() - now.getTime()) < 1_000 ? "now" : relative(d, now);
}

function Approvals({ o }: { o: Overview }) {
  return (
    <section id="approvals">
      <h2>Pending approvals ({o.approvals.length})</h2>
      {o.approvals.length === 0 ? (
        <p class="muted">Nothing waits for approval.</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th>Request</th>
              <th>Kind</th>
              <th>What</th>
              <th>Approvals</th>
              <th>Expires</th>
            </tr>
          </thead>
          <tbody>
            {o.approvals.map((a) => (
              <tr>
                <td>
                  <code>{a.id}</code>
                  <div class="muted">by {a.requestedBy}</div>
                </td>
                <td>{a.kind}</td>
                <td>{a.summary}</td>
                <td>
                  {a.approved} of {a.required}
                </td>
                <td>{relative(a.expiresAt, o.now)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function names(c: CertificateSummary): string {
  return c.subject || c.sans.join(", ");
}

function Issued({ rows, now }: { rows: CertificateSummary[]; now: Date }) {
  return (
    <section id="issued" class="wide">
      <h2>Recent issuance (last {rows.length})</h2>
      <table>
        <thead>
          <tr>
            <th>Serial</th>
            <th>Profile</th>
            <th>Subject / names</th>
            <th>Issued</th>
            <th>Expires</th>
            <th>By</th>
            <th>Status</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((c) => (
            <tr data-serial={c.serial}>
              <td>
                <code>{c.serial}</code>
              </td>
              <td>{c.profile}</td>
              <td>{names(c)}</td>
              <td>{utc(c.createdAt)}</td>
              <td>{relative(c.notAfter, now)}</td>
              <td>{c.requestedBy ?? "—"}</td>
              <td>{c.status === "revoked" ? <span class="badge bad">revoked</span> : <span class="badge ok">valid</span>}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function Revoked({ rows }: { rows: Array<CertificateSummary & { reason: string }> }) {
  return (
    <section id="revoked" class="wide">
      <h2>Recent revocations (last {rows.length})</h2>
      {rows.length === 0 ? (
        <p class="muted">No certificate has been revoked.</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th>Serial</th>
              <th>Profile</th>
              <th>Subject / names</th>
              <th>Revoked</th>
              <th>Reason</th>
              <th>By</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((c) => (
              <tr data-serial={c.serial}>
                <td>
                  <code>{c.serial}</code>
                </td>
                <td>{c.profile}</td>
                <td>{names(c)}</td>
                <td>{utc(c.revokedAt!)}</td>
                <td>{c.reason}</td>
                <td>{c.revokedBy ?? "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
