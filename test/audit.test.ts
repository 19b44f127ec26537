import crypto from "node:crypto";
import fs from "node:fs";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withActor } from "../src/audit/actor.ts";
import { AuditLog, type AuditLogger } from "../src/audit/audit-log.ts";
import { entryHash, GENESIS_HASH } from "../src/audit/chain.ts";
import { checkpointMessage, checkpointSignatureValid } from "../src/audit/checkpoint.ts";
import { verifyAuditLog, type AuditVerification } from "../src/audit/verify.ts";
import { auditEntriesPage, listAuditCheckpoints, withAuditLock, type AuditCheckpointRow, type AuditRow } from "../src/store/audit.ts";
import { openStore, type Database, type Store } from "../src/store/database.ts";
import { auditAnchorSuite } from "./audit-anchor-suite.ts";
import { runCliInProcess } from "./helpers/cli.ts";
import { makeCsr, tempDir } from "./helpers/openssl.ts";
import { copyMigratedPglite } from "./helpers/pglite-template.ts";
import { startTestService, type TestService } from "./helpers/service.ts";

/**
 * The audit log on the real service (PostgreSQL), wired the way service.ts
 * wires it: an AuditLog around the service's store, the HSM's key-use
 * events, checkpoints signed on the service's token. Then tampering, done
 * with raw SQL inside a transaction that is rolled back, and verification.
 */
let t: TestService;
let db: Database;
let audit: AuditLog;
let admin: string;
let issuer: string;
let auditor: string;
const log: AuditLogger = { error: () => {}, warn: () => {} };
/** The service's log lines. */
const logLines: string[] = [];

const idOf = (token: string) => token.split("_")[1]!;

async function allEntries(): Promise<AuditRow[]> {
  return auditEntriesPage(db, { afterSeq: 0, limit: 100_000 });
}

class Rollback extends Error {}

/** Changes the tables, verifies, and undoes the change. */
async function tampered(change: (tx: Database) => Promise<unknown>, options?: Parameters<typeof verifyAuditLog>[1]): Promise<AuditVerification> {
  let result: AuditVerification | undefined;
  try {
    // Holding the audit lock, as the service's writers do: an entry the service appends meanwhile would otherwise
    // point at a hash the rewrite just replaced, and be reported instead of what the test is about.
    await withAuditLock(db, async (tx) => {
      await change(tx);
      result = await verifyAuditLog(tx, options);
      throw new Rollback();
    });
  } catch (err) {
    if (!(err instanceof Rollback) && !((err as Error).cause instanceof Rollback)) throw err;
  }
  return result!;
}

/** Renumbers seq >= from one up, leaving a hole at `from` (two steps: seq is the primary key). */
async function openHole(tx: Database, from: number): Promise<void> {
  await tx.execute(sql`update audit_log set seq = -seq where seq >= ${from}`);
  await tx.execute(sql`update audit_log set seq = -seq + 1 where seq < 0`);
}

async function entryAt(tx: Database, seq: number): Promise<AuditRow> {
  const [row] = await auditEntriesPage(tx, { afterSeq: seq - 1, limit: 1 });
  expect(row?.seq).toBe(seq);
  return row!;
}

beforeAll(async () => {
  t = await startTestService("postgres", {}, (line) => void logLines.push(line));
  db = t.service.ctx.store.db;
  // The service's own audit log, which records the HSM's key use: a second
  // writer with a second key-use recorder would log every key use twice.
  audit = t.service.ctx.audit!;
  [admin, issuer, auditor] = await Promise.all([t.token("admin"), t.token("issuer", "tls-server"), t.token("auditor")]);
});
afterAll(async () => {
  await t?.stop();
});

let issuedSerial: string;

describe("what is recorded", () => {
  it("issuance, revocation, auth failures, key uses and CLI admin actions, in one chain", async () => {
    const issued = await t.api("POST", "/api/v1/certificates", {
      token: issuer,
      json: { csr: makeCsr({ subject: "/CN=audit.example.test", san: "DNS:audit.example.test" }).csr, profile: "tls-server", validity: "24h" },
    });
    expect(issued.status, issued.text).toBe(201);
    issuedSerial = issued.body.serial;
    const revoked = await t.api("POST", `/api/v1/certificates/${issuedSerial}/revoke`, { token: admin, json: { reason: "superseded" } });
    expect(revoked.status).toBe(200);
    expect((await t.api("GET", "/api/v1/cas", { token: "hsmca_0123456789ab_" + "s".repeat(32) })).status).toBe(401);
    expect((await t.api("GET", "/api/v1/cas")).status).toBe(401);
    const forbidden = await t.api("POST", "/api/v1/certificates", { token: auditor, json: { csr: "x", profile: "tls-server" } });
    expect(forbidden.status).toBe(403);
    await audit.flush();

    const rows = await allEntries();
    const issue = rows.find((r) => r.kind === "certificate.issue" && r.subject === issuedSerial);
    expect(issue).toMatchObject({ actor: `token:${idOf(issuer)}`, result: "ok" });
    expect(issue!.details).toMatchObject({ serial: issuedSerial, profile: "tls-server", requested_by: idOf(issuer) });

    const intermediate = t.service.ctx.issuer().row;
    const sign = rows.find((r) => r.kind === "hsm.sign" && r.actor === `token:${idOf(issuer)}`);
    expect(sign).toMatchObject({ subject: intermediate.keyLabel, result: "ok" });
    expect(sign!.details).toMatchObject({ key_id: intermediate.keyId });
    expect(typeof sign!.details.ms).toBe("number");
    expect(sign!.seq).toBeLessThan(issue!.seq);

    const revoke = rows.find((r) => r.kind === "certificate.revoke" && r.subject === issuedSerial);
    expect(revoke).toMatchObject({ actor: `token:${idOf(admin)}` });
    expect(revoke!.details).toMatchObject({ reason: "superseded", revoked_by: idOf(admin) });

    const failures = rows.filter((r) => r.kind === "auth.failure");
    expect(failures.map((r) => [r.actor, r.result, r.details.reason])).toEqual([
      ["anonymous", "error", "unknown token"],
      ["anonymous", "error", "no bearer token"],
      [`token:${idOf(auditor)}`, "error", "role auditor may not use this route"],
    ]);
    expect(failures[0]!.details).toMatchObject({ route: "/api/v1/cas", method: "GET", claimed_token: "0123456789ab" });

    // The CLI processes that made the tokens wrote to the same chain.
    const created = rows.filter((r) => r.kind === "admin.token.create");
    expect(created.map((r) => r.subject).sort()).toEqual([admin, issuer, auditor].map(idOf).sort());
    expect(created.every((r) => r.actor === "cli")).toBe(true);

    // Never a secret.
    const everything = JSON.stringify(rows);
    for (const token of [admin, issuer, auditor]) expect(everything).not.toContain(token.slice(`hsmca_${idOf(token)}_`.length));
    expect(everything).not.toContain("s".repeat(32));

    expect(rows.map((r) => r.seq)).toEqual(rows.map((_, i) => i + 1));
    expect(rows[0]!.prevHash).toBe(GENESIS_HASH);
    const result = await verifyAuditLog(db);
    expect(result).toMatchObject({ ok: true, entries: rows.length });
    expect(result.firstBad).toBeUndefined();
  });

  it("names the actor set with withActor, and never throws on odd details", async () => {
    withActor("system:test", () => audit.record({ kind: "test.actor", details: { big: 10n, when: new Date(0), nul: "a\u0000b", lone: "\ud800", nested: { z: 1, a: [undefined, () => 1] } } }));
    audit.record({ kind: "test.actor", actor: "cli", details: { n: -0, inf: Infinity } });
    await audit.flush();
    const rows = (await allEntries()).filter((r) => r.kind === "test.actor");
    expect(rows.map((r) => r.actor)).toEqual(["system:test", "cli"]);
    expect(rows[0]!.details).toEqual({ big: "10", when: "1970-01-01T00:00:00.000Z", nul: "a\ufffdb", lone: "\ufffd", nested: { z: 1, a: [null, null] } });
    expect(rows[1]!.details).toEqual({ n: 0, inf: null });
    expect((await verifyAuditLog(db)).ok).toBe(true);
  });
});

let checkpoint: AuditCheckpointRow;

describe("checkpoints", () => {
  it("signs the chain head with an audit key on the HSM, made on first need", async () => {
    const made = await audit.checkpoint();
    expect(made).toBeDefined();
    checkpoint = made!;
    const hsm = t.service.hsm;
    expect(checkpoint.keyLabel).toMatch(/^hsm-ca\/audit\/\d{8}-[0-9a-f]{8}$/);
    expect(hsm.hasKey(checkpoint.keyLabel)).toBe(true);
    expect(Buffer.from(await hsm.publicKeySpki(checkpoint.keyLabel, "ecdsa-p256")).toString("base64")).toBe(checkpoint.publicKey);
    expect(checkpointSignatureValid(checkpoint)).toBe(true);
    const rows = await allEntries();
    expect(rows.find((r) => r.seq === checkpoint.seq)!.hash).toBe(checkpoint.headHash);

    // Its key was made and used: both are in the log, as the audit log's own doing.
    await audit.flush();
    const own = (await allEntries()).filter((r) => r.subject === checkpoint.keyLabel);
    expect(own.map((r) => [r.kind, r.actor])).toEqual([
      ["hsm.generate", "system:audit"],
      ["hsm.sign", "system:audit"],
    ]);

    // Nothing new but its own signature: no second checkpoint. (Unless the service signed
    // something meanwhile, such as the revocation's CRL and OCSP response: then try again.)
    for (let attempt = 1; ; attempt++) {
      const first = (await audit.checkpoint()) ?? (await listAuditCheckpoints(db)).at(-1)!;
      const again = await audit.checkpoint();
      if (!again) break;
      const between = (await allEntries()).filter((r) => r.seq > first.seq && r.seq <= again.seq);
      expect(between.some((r) => r.actor !== "system:audit")).toBe(true);
      expect(attempt).toBeLessThan(10);
      await new Promise((r) => setTimeout(r, 300));
    }
    audit.record({ kind: "test.checkpoint" });
    const next = await audit.checkpoint();
    expect(next).toMatchObject({ keyLabel: checkpoint.keyLabel });
    expect(next!.seq).toBeGreaterThan(checkpoint.seq);

    const result = await verifyAuditLog(db, { publicKeyOf: async (label) => Buffer.from(await hsm.publicKeySpki(label, "ecdsa-p256")) });
    expect(result).toMatchObject({ ok: true, checkpoints: (await listAuditCheckpoints(db)).length });
  });
});

describe("tampering is found", () => {
  let rows: AuditRow[];
  beforeAll(async () => {
    await audit.flush();
    rows = await allEntries();
    expect(rows.length).toBeGreaterThan(12);
  });
  const issueSeq = () => rows.find((r) => r.kind === "certificate.issue" && r.subject === issuedSerial)!.seq;

  it("an edited entry", async () => {
    const seq = issueSeq();
    const r = await tampered((tx) => tx.execute(sql`update audit_log set details = details || '{"profile":"code-signing"}'::jsonb where seq = ${seq}`));
    expect(r.ok).toBe(false);
    expect(r.firstBad).toMatchObject({ seq, problem: "edited" });
    // Even below the millisecond, which a Date does not show.
    const r2 = await tampered((tx) => tx.execute(sql`update audit_log set at = at + interval '1 microsecond' where seq = ${seq}`));
    expect(r2.firstBad).toMatchObject({ seq, problem: "edited" });
  });

  it("a deleted entry: the gap", async () => {
    const r = await tampered((tx) => tx.execute(sql`delete from audit_log where seq = 5`));
    expect(r.firstBad).toMatchObject({ seq: 5, problem: "deleted" });
    expect(r.firstBad!.detail).toMatch(/seq 5 is missing/);
    const first = await tampered((tx) => tx.execute(sql`delete from audit_log where seq <= 2`));
    expect(first.firstBad).toMatchObject({ seq: 1, problem: "deleted" });
    // Deleted and the rest renumbered: nothing links up.
    const renumbered = await tampered(async (tx) => {
      await tx.execute(sql`delete from audit_log where seq = 5`);
      await tx.execute(sql`update audit_log set seq = -seq where seq > 5`);
      await tx.execute(sql`update audit_log set seq = -seq - 1 where seq < 0`);
    });
    expect(renumbered.firstBad).toMatchObject({ seq: 5, problem: "deleted" });
  });

  it("the tail deleted past a checkpoint", async () => {
    const r = await tampered((tx) => tx.execute(sql`delete from audit_log where seq >= ${checkpoint.seq}`));
    expect(r.firstBad).toBeUndefined();
    expect(r.badCheckpoint).toMatchObject({ id: checkpoint.id });
    expect(r.badCheckpoint!.detail).toMatch(/not in the log/);
  });

  it("an inserted entry, with a correct hash or without", async () => {
    const seq = 6;
    const forge = async (tx: Database, proper: boolean) => {
      const before = await entryAt(tx, seq - 1);
      await openHole(tx, seq);
      const forged = {
        seq,
        at: new Date(before.at.getTime() + 1),
        kind: "certificate.revoke",
        actor: `token:${idOf(admin)}`,
        subject: "0badc0ffee",
        result: "ok" as const,
        details: { serial: "0badc0ffee", reason: "superseded" },
        prevHash: before.hash,
      };
      const hash = proper ? entryHash(forged) : "f".repeat(64);
      await tx.execute(
        sql`insert into audit_log (seq, at, kind, actor, subject, result, details, prev_hash, hash) values (${seq}, ${forged.at.toISOString()}, ${forged.kind}, ${forged.actor}, ${forged.subject}, ${forged.result}, ${JSON.stringify(forged.details)}::jsonb, ${forged.prevHash}, ${hash})`,
      );
    };
    for (const proper of [true, false]) {
      const r = await tampered((tx) => forge(tx, proper));
      expect(r.firstBad, `proper hash: ${proper}`).toMatchObject({ seq, problem: "inserted" });
    }
    // A forged first entry, in front of the real one.
    const genesis = await tampered(async (tx) => {
      await openHole(tx, 1);
      const forged = { seq: 1, at: new Date(0), kind: "admin.init", actor: "cli", subject: null, result: "ok" as const, details: {}, prevHash: GENESIS_HASH };
      await tx.execute(
        sql`insert into audit_log (seq, at, kind, actor, subject, result, details, prev_hash, hash) values (1, ${forged.at.toISOString()}, 'admin.init', 'cli', null, 'ok', '{}'::jsonb, ${GENESIS_HASH}, ${entryHash(forged)})`,
      );
    });
    expect(genesis.firstBad).toMatchObject({ seq: 1, problem: "inserted" });
  });

  it("re-ordered entries", async () => {
    const swap = (a: number, b: number) => (tx: Database) =>
      tx.execute(sql`
        update audit_log x set at = y.at, kind = y.kind, actor = y.actor, subject = y.subject, result = y.result,
          details = y.details, prev_hash = y.prev_hash, hash = y.hash
        from audit_log y where (x.seq = ${a} and y.seq = ${b}) or (x.seq = ${b} and y.seq = ${a})`);
    expect((await tampered(swap(4, 7))).firstBad).toMatchObject({ seq: 4, problem: "re-ordered" });
    expect((await tampered(swap(8, 9))).firstBad).toMatchObject({ seq: 8, problem: "re-ordered" });
    expect((await tampered(swap(1, 2))).firstBad).toMatchObject({ seq: 1, problem: "re-ordered" });
  });

  it("an entry edited and the chain re-hashed after it: the checkpoint still knows", async () => {
    const r = await tampered(async (tx) => {
      const all = await auditEntriesPage(tx, { afterSeq: 0, limit: 100_000 });
      let prevHash = GENESIS_HASH;
      for (const row of all) {
        const changed = { ...row, prevHash, details: row.seq === 3 ? { ...row.details, forged: true } : row.details };
        const hash = entryHash(changed);
        await tx.execute(sql`update audit_log set details = ${JSON.stringify(changed.details)}::jsonb, prev_hash = ${prevHash}, hash = ${hash} where seq = ${row.seq}`);
        prevHash = hash;
      }
    });
    expect(r.firstBad).toBeUndefined();
    expect(r.badCheckpoint).toMatchObject({ id: checkpoint.id });
    expect(r.badCheckpoint!.detail).toMatch(/head hash/);
  });

  it("a forged checkpoint signature", async () => {
    const other = (await listAuditCheckpoints(db)).find((c) => c.id !== checkpoint.id)!;
    const r = await tampered((tx) => tx.execute(sql`update audit_checkpoints set signature = ${other.signature} where id = ${checkpoint.id}`));
    expect(r.badCheckpoint).toMatchObject({ id: checkpoint.id, detail: "its signature does not verify" });
    const r2 = await tampered((tx) => tx.execute(sql`update audit_checkpoints set seq = seq - 1 where id = ${checkpoint.id}`));
    expect(r2.badCheckpoint).toMatchObject({ id: checkpoint.id, detail: "its signature does not verify" });
  });

  it("a checkpoint signed with a key that is not the HSM's", async () => {
    const { privateKey, publicKey } = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
    const head = rows.at(-1)!;
    const fake = { seq: head.seq, headHash: head.hash, at: new Date(), keyLabel: checkpoint.keyLabel };
    const signature = crypto.sign("sha256", checkpointMessage(fake), { key: privateKey, dsaEncoding: "ieee-p1363" }).toString("base64");
    const spki = publicKey.export({ type: "spki", format: "der" }).toString("base64");
    const insert = (label: string) => (tx: Database) =>
      tx.execute(sql`insert into audit_checkpoints (seq, head_hash, at, key_label, public_key, signature)
        values (${fake.seq}, ${fake.headHash}, ${fake.at.toISOString()}, ${label}, ${spki}, ${label === fake.keyLabel ? signature : crypto.sign("sha256", checkpointMessage({ ...fake, keyLabel: label }), { key: privateKey, dsaEncoding: "ieee-p1363" }).toString("base64")})`);
    const hsm = t.service.hsm;
    const publicKeyOf = async (label: string) => (hsm.hasKey(label) ? Buffer.from(await hsm.publicKeySpki(label, "ecdsa-p256")) : undefined);
    // Self-consistent: only a trusted key tells it apart.
    expect((await tampered(insert(fake.keyLabel))).ok).toBe(true);
    expect((await tampered(insert(fake.keyLabel), { publicKeyOf })).badCheckpoint?.detail).toMatch(/not the HSM's key/);
    expect((await tampered(insert("hsm-ca/audit/20200101-00000000"), { publicKeyOf })).badCheckpoint?.detail).toMatch(/not on the HSM/);
  });
});

describe("two replicas", () => {
  it("writing at once make one valid chain", async () => {
    const stores: Store[] = await Promise.all([1, 2].map(() => openStore({ databaseUrl: t.config.databaseUrl!, dataDir: t.config.dataDir })));
    try {
      const writers = stores.map((s) => new AuditLog({ db: s.db, log, flushDelayMs: 1 }));
      await Promise.all(
        writers.map(async (w, n) => {
          for (let i = 0; i < 150; i++) {
            w.record({ kind: "test.replica", actor: `system:replica-${n}`, details: { i } });
            if (i % 10 === 0) await new Promise((r) => setTimeout(r, Math.random() * 5));
            if (i % 50 === 0) void w.flush();
          }
          await w.stop();
        }),
      );
      expect(writers.map((w) => w.pendingCount)).toEqual([0, 0]);
      const rows = (await allEntries()).filter((r) => r.kind === "test.replica");
      expect(rows).toHaveLength(300);
      for (const n of [0, 1]) {
        // Each writer's entries in its own order...
        expect(rows.filter((r) => r.actor === `system:replica-${n}`).map((r) => r.details.i)).toEqual([...Array(150).keys()]);
      }
      // ...interleaved with the other's.
      const switches = rows.filter((r, i) => i > 0 && r.actor !== rows[i - 1]!.actor).length;
      expect(switches).toBeGreaterThan(1);
      expect(await verifyAuditLog(db)).toMatchObject({ ok: true });
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });
});

describe("the CLI", () => {
  it("exports JSON lines, filtered by time, that a SIEM can re-hash", async () => {
    const since = new Date();
    await new Promise((r) => setTimeout(r, 5));
    for (let i = 0; i < 3; i++) audit.record({ kind: "test.export", subject: `e${i}` });
    await audit.flush();

    const all = await runCliInProcess(["audit", "export"], t.env);
    expect(all.code, all.stderr).toBe(0);
    const lines = all.stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(lines.length).toBeGreaterThan(300);
    expect(lines[0].seq).toBe(1);
    let prev = GENESIS_HASH;
    for (const e of lines) {
      expect(e.prev_hash).toBe(prev);
      expect(entryHash({ ...e, at: new Date(e.at), prevHash: e.prev_hash })).toBe(e.hash);
      prev = e.hash;
    }

    const recent = await runCliInProcess(["audit", "export", "--since", since.toISOString()], t.env);
    expect(recent.code, recent.stderr).toBe(0);
    const got = recent.stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(got.every((e) => new Date(e.at) >= since)).toBe(true);
    expect(got.filter((e) => e.kind === "test.export").map((e) => e.subject)).toEqual(["e0", "e1", "e2"]);
    expect(got.some((e) => e.kind === "certificate.issue")).toBe(false);

    const bad = await runCliInProcess(["audit", "export", "--since", "yesterday"], t.env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--since "yesterday" is not an ISO 8601/);
  });

  it("audit verify: 0 when the chain holds, 1 naming the first bad entry", async () => {
    await audit.flush();
    const ok = await runCliInProcess(["audit", "verify", "--check-keys"], t.env);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^OK: \d+ entries \(seq 1\.\.\d+\), \d+ signed checkpoints, HSM anchor at seq \d+; head [0-9a-f]{64}\n$/);

    const seq = (await allEntries()).find((r) => r.kind === "certificate.issue" && r.subject === issuedSerial)!.seq;
    const original = await entryAt(db, seq);
    await db.execute(sql`update audit_log set details = details || '{"profile":"code-signing"}'::jsonb where seq = ${seq}`);
    try {
      const bad = await runCliInProcess(["audit", "verify"], t.env);
      expect(bad.code).toBe(1);
      expect(bad.stdout).toMatch(new RegExp(`^first bad entry: seq ${seq} \\(edited\\): its hash does not match its content\\n`));
      expect(bad.stderr).toMatch(/does NOT verify/);
    } finally {
      await db.execute(sql`update audit_log set details = ${JSON.stringify(original.details)}::jsonb where seq = ${seq}`);
    }
    expect((await runCliInProcess(["audit", "verify"], t.env)).code).toBe(0);
  });
});

describe("failures never reach the caller", () => {
  it("an unwritable database: entries kept, logged loudly, written later", async () => {
    const dir = tempDir("hsmca-audit-");
    await copyMigratedPglite(dir);
    const store = await openStore({ dataDir: dir });
    let broken = true;
    const flaky = new Proxy(store.db, {
      get: (target, prop, receiver) => (prop === "transaction" && broken ? () => Promise.reject(new Error("connection lost")) : Reflect.get(target, prop, receiver)),
    });
    const seen: string[] = [];
    const w = new AuditLog({ db: flaky, log: { error: (_o, msg) => void seen.push(msg), warn: () => {} }, flushDelayMs: 1 });
    try {
      w.record({ kind: "test.flaky" });
      await w.flush();
      expect(w.pendingCount).toBe(1);
      expect(seen.some((m) => m.startsWith("AUDIT LOG WRITE FAILED"))).toBe(true);
      broken = false;
      await w.flush();
      expect(w.pendingCount).toBe(0);
      // PGlite takes the advisory lock as PostgreSQL does.
      expect(await verifyAuditLog(store.db)).toMatchObject({ ok: true, entries: 1 });
    } finally {
      await w.stop();
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the HSM audit anchor (PostgreSQL: the CLI opens the database and the token itself)", () => auditAnchorSuite("postgres", () => ({ service: t, logLines })));
