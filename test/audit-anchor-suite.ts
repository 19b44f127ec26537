import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { sql } from "drizzle-orm";
import { beforeAll, expect, it } from "vitest";
import { advanceAnchor, readAnchor } from "../src/audit/anchor.ts";
import { AuditLog } from "../src/audit/audit-log.ts";
import { entryHash, GENESIS_HASH } from "../src/audit/chain.ts";
import { auditEntriesPage, insertAuditCheckpoint, insertAuditEntries, listAuditCheckpoints, withAuditLock } from "../src/store/audit.ts";
import { openStore, type Database } from "../src/store/database.ts";
import { runCliInProcess } from "./helpers/cli.ts";
import type { Backend, TestService } from "./helpers/service.ts";

const log = { error: () => {}, warn: () => {} };

/**
 * The anchor the database cannot rewrite: the latest checkpoint kept on the
 * HSM token. The service is tampered with as an attacker with write access
 * to the database would, and checked with the real CLI (on PGlite it
 * reaches the service over its control socket, on PostgreSQL it opens the
 * database and the token itself). One service per process: SoftHSM2 takes
 * one configuration per process, so each backend has its own test file.
 */
export function auditAnchorSuite(backend: Backend, get: () => { service: TestService; logLines: string[] }) {
  let s: TestService;
  let sdb: Database;
  let saudit: AuditLog;
  let logLines: string[];
  const verify = (...flags: string[]) => runCliInProcess(["audit", "verify", ...flags], s.env);

  beforeAll(async () => {
    ({ service: s, logLines } = get());
    sdb = s.service.ctx.store.db;
    saudit = s.service.ctx.audit!;
    await s.token("admin");
  });

  /** The audit tables as they are, and a way to put them back (taking the audit lock, as writers do). */
  async function snapshot(): Promise<() => Promise<void>> {
    await saudit.flush();
    const saved = await withAuditLock(sdb, async (tx) => ({
      entries: (await auditEntriesPage(tx, { afterSeq: 0, limit: 1_000_000 })).map(({ subMillisecond: _, ...row }) => row),
      checkpoints: await listAuditCheckpoints(tx),
    }));
    return () =>
      withAuditLock(sdb, async (tx) => {
        await tx.execute(sql`delete from audit_checkpoints`);
        await tx.execute(sql`delete from audit_log`);
        await insertAuditEntries(tx, saved.entries);
        for (const cp of saved.checkpoints) await insertAuditCheckpoint(tx, cp);
      });
  }

  function pkcs11Tool(...args: string[]): string {
    const dir = path.join(s.config.dataDir, "hsm");
    const pin = fs.readFileSync(path.join(dir, "user.pin"), "utf8").trim();
    return execFileSync("pkcs11-tool", ["--module", "/usr/lib/softhsm/libsofthsm2.so", "--token-label", s.config.hsm.tokenLabel, "--login", "--pin", pin, ...args], {
      env: { ...process.env, SOFTHSM2_CONF: path.join(dir, "softhsm2.conf") },
      encoding: "utf8",
    });
  }

  it("follows each checkpoint: a private data object a user sees with pkcs11-tool, and a log line", async () => {
    saudit.record({ kind: "test.anchor" });
    const first = await saudit.checkpoint();
    saudit.record({ kind: "test.anchor" });
    const second = await saudit.checkpoint();
    expect(first && second && second.seq > first.seq).toBe(true);

    const listed = pkcs11Tool("--list-objects", "--type", "data");
    expect(listed).toMatch(/Data object \d+\n\s+label:\s+'hsm-ca audit anchor'\n\s+application:\s+'hsm-ca'\n[^\n]*\n\s+flags:\s+modifiable private/);
    expect(listed.match(/'hsm-ca audit anchor'/g)).toHaveLength(1);
    const value = JSON.parse(pkcs11Tool("--read-object", "--type", "data", "--label", "hsm-ca audit anchor"));
    expect(value).toMatchObject({ seq: second!.seq, head_hash: second!.headHash, key_label: second!.keyLabel, signature: second!.signature });

    const logged = logLines.map((l) => JSON.parse(l)).filter((l) => l.msg === "audit checkpoint signed");
    expect(logged.at(-1).auditCheckpoint).toEqual({ seq: second!.seq, headHash: second!.headHash, at: second!.at.toISOString(), keyLabel: second!.keyLabel, signature: second!.signature });

    for (const flags of [[], ["--check-keys"]]) {
      const ok = await verify(...flags);
      expect(ok.code, ok.stdout + ok.stderr).toBe(0);
      expect(ok.stdout).toMatch(new RegExp(`^OK: \\d+ entries \\(seq 1\\.\\.\\d+\\), \\d+ signed checkpoints, HSM anchor at seq ${second!.seq}; head [0-9a-f]{64}\\n$`));
    }
  });

  it("catches an entry edited, every later one re-hashed and every checkpoint deleted", async () => {
    const putBack = await snapshot();
    const anchorBefore = readAnchor(s.service.hsm)!;
    try {
      await withAuditLock(sdb, async (tx) => {
        const all = await auditEntriesPage(tx, { afterSeq: 0, limit: 1_000_000 });
        const victim = all.find((r) => r.kind === "admin.token.create")!.seq;
        let prevHash = GENESIS_HASH;
        for (const row of all) {
          const changed = { ...row, prevHash, details: row.seq === victim ? { ...row.details, forged: true } : row.details };
          const hash = entryHash(changed);
          await tx.execute(sql`update audit_log set details = ${JSON.stringify(changed.details)}::jsonb, prev_hash = ${prevHash}, hash = ${hash} where seq = ${row.seq}`);
          prevHash = hash;
        }
        await tx.execute(sql`delete from audit_checkpoints`);
      });
      for (const flags of [[], ["--check-keys"]]) {
        const bad = await verify(...flags);
        expect(bad.code).toBe(1);
        // The chain holds together: only the anchor tells.
        expect(bad.stdout).toBe(
          `HSM audit anchor: the database has no signed checkpoint, but the HSM's audit anchor holds one at seq ${anchorBefore.seq}: checkpoints were deleted; ` +
            `the entry at seq ${anchorBefore.seq} is not the one the HSM's audit anchor signed: the log was rewritten\n`,
        );
        expect(bad.stderr).toMatch(/^The audit log does NOT verify \(\d+ entries .*, 0 signed checkpoints, HSM anchor at seq \d+\)\.\n$/);
      }
      // Nor does the service sign the rewritten log: the anchor stays where it was.
      saudit.record({ kind: "test.after-rewrite" });
      expect(await saudit.checkpoint()).toBeUndefined();
      expect(readAnchor(s.service.hsm)).toEqual(anchorBefore);
      expect(logLines.some((l) => l.includes("not signing a log the HSM's audit anchor does not vouch for"))).toBe(true);
    } finally {
      await putBack();
    }
    expect((await verify()).code).toBe(0);
  });

  it("catches the last checkpoints deleted; the next checkpoint puts the anchor's back and says so", async () => {
    const anchor = readAnchor(s.service.hsm)!;
    const checkpoints = await listAuditCheckpoints(sdb);
    expect(checkpoints.length).toBeGreaterThanOrEqual(2);
    const kept = checkpoints.at(-2)!;
    await sdb.execute(sql`delete from audit_checkpoints where seq > ${kept.seq}`);
    const bad = await verify();
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe(`HSM audit anchor: the database's last checkpoint is at seq ${kept.seq}, behind the HSM's audit anchor at seq ${anchor.seq}: checkpoints were deleted\n`);

    saudit.record({ kind: "test.after-delete" });
    const next = await saudit.checkpoint();
    expect(next!.seq).toBeGreaterThan(anchor.seq);
    expect((await listAuditCheckpoints(sdb)).some((cp) => cp.seq === anchor.seq && cp.signature === anchor.signature)).toBe(true);
    await saudit.flush();
    const restored = (await auditEntriesPage(sdb, { afterSeq: 0, limit: 1_000_000 })).filter((r) => r.kind === "audit.checkpoint.restored");
    expect(restored.map((r) => [r.result, r.details.seq])).toEqual([["error", anchor.seq]]);
    expect((await verify()).code).toBe(0);
  });

  it("catches entries older than the checkpoint interval that no checkpoint covers", async () => {
    saudit.record({ kind: "test.old", at: new Date(Date.now() - 60 * 60_000) });
    await saudit.flush();
    const old = (await auditEntriesPage(sdb, { afterSeq: 0, limit: 1_000_000 })).find((r) => r.kind === "test.old")!;
    const bad = await verify();
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(new RegExp(`^not covered: seq ${old.seq} \\(recorded ${old.at.toISOString().replace(/[.]/g, "\\.")}\\) and the entries after it are older than two checkpoint intervals`));
    await saudit.checkpoint();
    expect((await verify()).code).toBe(0);
  });

  if (backend === "postgres") {
    it("moves only forward, with replicas checkpointing at once", async () => {
      const hsm = s.service.hsm;
      const stores = await Promise.all([1, 2].map(() => openStore({ databaseUrl: s.config.databaseUrl!, dataDir: s.config.dataDir })));
      try {
        const replicas = stores.map((st) => new AuditLog({ db: st.db, log, checkpoints: { hsm } }));
        await Promise.all(
          replicas.map(async (r, n) => {
            for (let i = 0; i < 10; i++) {
              r.record({ kind: "test.replica-checkpoint", actor: `system:replica-${n}`, details: { i } });
              await r.checkpoint();
            }
            await r.stop();
          }),
        );
        const last = (await listAuditCheckpoints(sdb)).at(-1)!;
        const anchor = readAnchor(hsm)!;
        expect(anchor).toMatchObject({ seq: last.seq, headHash: last.headHash, signature: last.signature });
        expect(() => advanceAnchor(hsm, anchor, { ...anchor, seq: anchor.seq - 1 })).toThrow(/not moving it back/);
        expect(readAnchor(hsm)).toEqual(anchor);
        expect((await verify("--check-keys")).code).toBe(0);
      } finally {
        await Promise.all(stores.map((st) => st.close()));
      }
    });
  }
}
