import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import zlib from "node:zlib";
import { z } from "zod";
import type { TableDump } from "../store/dump.ts";
import { BackupError } from "./errors.ts";

/**
 * The backup file: a fixed header, then AES-256-GCM over a gzipped JSON
 * manifest. The key comes from scrypt over the operator's passphrase; the
 * header is the GCM additional data, so that a changed byte anywhere (header,
 * ciphertext or tag) fails decryption instead of yielding altered content.
 *
 *   offset  size  field
 *        0    14  magic "HSMCA-BACKUP-1"
 *       14     1  scrypt log2(N)
 *       15     4  scrypt r (big-endian)
 *       19     4  scrypt p (big-endian)
 *       23    16  salt
 *       39    12  GCM nonce
 *       51     …  ciphertext of gzip(JSON manifest)
 *     end-16  16  GCM tag
 */
const MAGIC = Buffer.from("HSMCA-BACKUP-1", "ascii");
const HEADER_LENGTH = MAGIC.length + 1 + 4 + 4 + 16 + 12;
const TAG_LENGTH = 16;
/** OWASP's scrypt floor (N=2^17, r=8, p=1): about half a second and 128 MiB here. */
const SCRYPT = { log2N: 17, r: 8, p: 1 };
/** What a header may ask for: enough for stronger settings, too little for a file to exhaust memory. */
const SCRYPT_LIMITS = { log2N: [14, 20], r: [1, 32], p: [1, 16] } as const;

export class ArchiveError extends BackupError {}

/** A file of the HSM's part, relative to where it is restored. */
const archivedFile = z.object({ path: z.string().min(1), data: z.string() });
export type ArchivedFile = z.infer<typeof archivedFile>;

const hsmPart = z.discriminatedUnion("kind", [
  z.object({
    /** The embedded token directory (objects stay encrypted under the token's keys), its PINs and settings. */
    kind: z.literal("softhsm2"),
    tokenLabel: z.string(),
    /** The separate root token's label, when the backup's service had one. */
    rootTokenLabel: z.string().optional(),
    /** softhsm2.conf without directories.tokendir, which depends on where it is restored. */
    settings: z.array(z.string()),
    /** tokens/..., user.pin, so.pin: paths relative to <data dir>/hsm. */
    files: z.array(archivedFile),
  }),
  z.object({
    /** What HSM_CA_BACKUP_HOOK wrote; restored by running the hook again. */
    kind: z.literal("hook"),
    tokenLabel: z.string(),
    files: z.array(archivedFile),
  }),
  z.object({ kind: z.literal("none"), reason: z.string() }),
]);
export type HsmPart = z.infer<typeof hsmPart>;

const manifestSchema = z.object({
  format: z.literal("hsm-ca-backup"),
  version: z.literal(1),
  createdAt: z.string(),
  hsm: hsmPart,
  database: z.object({
    kind: z.enum(["postgres", "pglite"]),
    tables: z.object({
      version: z.literal(1),
      tables: z.record(z.string(), z.object({ columns: z.array(z.string()), rows: z.array(z.array(z.string().nullable())) })),
    }) satisfies z.ZodType<TableDump>,
  }),
});
export type Manifest = z.infer<typeof manifestSchema>;

export async function encryptArchive(manifest: Manifest, passphrase: string): Promise<Buffer> {
  const header = Buffer.alloc(HEADER_LENGTH);
  MAGIC.copy(header, 0);
  header.writeUInt8(SCRYPT.log2N, 14);
  header.writeUInt32BE(SCRYPT.r, 15);
  header.writeUInt32BE(SCRYPT.p, 19);
  const salt = crypto.randomBytes(16);
  const nonce = crypto.randomBytes(12);
  salt.copy(header, 23);
  nonce.copy(header, 39);
  const key = await deriveKey(passphrase, salt, SCRYPT);
  const plaintext = await promisify(zlib.gzip)(Buffer.from(JSON.stringify(manifest), "utf8"));
  const cipher = crypto.createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(header);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([header, ciphertext, cipher.getAuthTag()]);
}

/**
 * Every failure past the magic says the same thing: with an authenticated
 * cipher a wrong passphrase and a changed or missing byte look alike.
 */
export async function decryptArchive(archive: Buffer, passphrase: string): Promise<Manifest> {
  if (archive.length < MAGIC.length || !archive.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new ArchiveError("this is not an hsm-ca backup archive");
  }
  const undecryptable = new ArchiveError("the archive cannot be decrypted: wrong passphrase or corrupted file");
  if (archive.length < HEADER_LENGTH + TAG_LENGTH) throw undecryptable;
  const header = archive.subarray(0, HEADER_LENGTH);
  const params = { log2N: header.readUInt8(14), r: header.readUInt32BE(15), p: header.readUInt32BE(19) };
  const inRange = (v: number, [lo, hi]: readonly [number, number]) => v >= lo && v <= hi;
  if (!inRange(params.log2N, SCRYPT_LIMITS.log2N) || !inRange(params.r, SCRYPT_LIMITS.r) || !inRange(params.p, SCRYPT_LIMITS.p)) throw undecryptable;
  const key = await deriveKey(passphrase, header.subarray(23, 39), params);
  let plaintext: Buffer;
  try {
    const decipher = crypto.createDecipheriv("aes-256-gcm", key, header.subarray(39, 51));
    decipher.setAAD(header);
    decipher.setAuthTag(archive.subarray(archive.length - TAG_LENGTH));
    plaintext = Buffer.concat([decipher.update(archive.subarray(HEADER_LENGTH, archive.length - TAG_LENGTH)), decipher.final()]);
  } catch {
    throw undecryptable;
  }
  // Authentic from here on: a failure below is a version mismatch, not corruption.
  let json: unknown;
  try {
    json = JSON.parse((await promisify(zlib.gunzip)(plaintext)).toString("utf8"));
  } catch (err) {
    throw new ArchiveError(`the archive decrypted but its content cannot be read: ${(err as Error).message}`);
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ArchiveError(`the archive is not a backup this version of hsm-ca understands (${issue.path.join(".")}: ${issue.message})`);
  }
  return parsed.data;
}

/**
 * Writes the archive beside its destination and renames it into place: a
 * reader never sees half a backup, and an older backup under the same name
 * survives a failed write. Mode 0600 from the first byte.
 */
export function writeArchiveFile(file: string, archive: Buffer): void {
  const dir = path.dirname(file);
  const temp = path.join(dir, `.${path.basename(file)}.${crypto.randomBytes(6).toString("hex")}.tmp`);
  const fd = fs.openSync(temp, "wx", 0o600);
  try {
    for (let written = 0; written < archive.length; ) written += fs.writeSync(fd, archive, written);
    fs.fsyncSync(fd);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(temp, { force: true });
    throw err;
  }
  fs.closeSync(fd);
  try {
    fs.renameSync(temp, file);
  } catch (err) {
    fs.rmSync(temp, { force: true });
    throw err;
  }
  syncDirectory(dir);
}

/** The rename is durable only once the directory is flushed. */
function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, "r");
    fs.fsyncSync(fd);
  } catch {
    // Some file systems refuse fsync on a directory; the data itself is synced.
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

async function deriveKey(passphrase: string, salt: Buffer, params: { log2N: number; r: number; p: number }): Promise<Buffer> {
  const N = 2 ** params.log2N;
  const maxmem = 128 * N * params.r * 2 + 1024 * 1024;
  return new Promise((resolve, reject) =>
    crypto.scrypt(passphrase.normalize("NFC"), salt, 32, { N, r: params.r, p: params.p, maxmem }, (err, key) => (err ? reject(err) : resolve(key))),
  );
}
