import crypto from "node:crypto";

/** A dashboard session lasts this long; then the browser asks for the token again. */
export const SESSION_TTL_MS = 30 * 60_000;

export interface Session {
  tokenId: string;
  expiresAt: number;
  /** Names this session, so that logging out ends it before it expires. */
  nonce: string;
}

/**
 * Dashboard sessions: the cookie holds the API token's public id, an
 * expiry and a nonce, HMAC-SHA-256-signed with a key made at start and
 * kept in memory only. Never the token, nor its hash: a stolen cookie is
 * worth one short session, not a token. The key dies with the process, so
 * a restart logs everyone out, and a session is known only to the replica
 * that made it (put the dashboard behind sticky sessions, or log in again).
 */
export class DashboardSessions {
  private readonly key = crypto.randomBytes(32);
  /** Nonces of sessions ended by logout, until they would have expired anyway. */
  private readonly ended = new Map<string, number>();

  constructor(
    private readonly ttlMs = SESSION_TTL_MS,
    private readonly clock: () => number = () => Date.now(),
  ) {}

  /** A new session's cookie value. */
  start(tokenId: string): string {
    const session: Session = { tokenId, expiresAt: this.clock() + this.ttlMs, nonce: crypto.randomBytes(16).toString("base64url") };
    const payload = Buffer.from(JSON.stringify(session), "utf8").toString("base64url");
    return `${payload}.${this.sign(payload)}`;
  }

  /** The session a cookie value stands for; undefined when forged, expired, ended or malformed. */
  check(value: string | undefined): Session | undefined {
    if (!value || value.length > 512) return undefined;
    const [payload, mac, extra] = value.split(".");
    if (!payload || !mac || extra !== undefined) return undefined;
    const expected = Buffer.from(this.sign(payload));
    const given = Buffer.from(mac);
    if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return undefined;
    let session: Session;
    try {
      session = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
    } catch {
      return undefined;
    }
    if (typeof session.tokenId !== "string" || typeof session.expiresAt !== "number" || typeof session.nonce !== "string") return undefined;
    if (session.expiresAt <= this.clock() || this.ended.has(session.nonce)) return undefined;
    return session;
  }

  /** Logout: this session's cookie stops working now, even if someone kept a copy. */
  end(value: string | undefined): void {
    const session = this.check(value);
    if (!session) return;
    const now = this.clock();
    for (const [nonce, expiresAt] of this.ended) if (expiresAt <= now) this.ended.delete(nonce);
    this.ended.set(session.nonce, session.expiresAt);
  }

  private sign(payload: string): string {
    return crypto.createHmac("sha256", this.key).update(payload).digest("base64url");
  }
}
