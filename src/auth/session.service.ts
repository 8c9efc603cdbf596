import { Inject, Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { Request } from 'express';
import { createHash } from 'node:crypto';
import { DataSource } from 'typeorm';
import { clientIp, userAgent } from '../common/http';
import type { KeywardConfig } from '../config/config';
import { KEYWARD_CONFIG } from '../config/config.constants';
import type { User } from './users/user.entity';
import { UsersService } from './users/users.service';
import type { AuthUser } from './auth.types';

export type SessionState = { user: AuthUser } | { user: null; reason: string | null };

export interface SessionSummary {
  /** A handle for this session (a hash of its id: the id itself is the cookie's secret). */
  handle: string;
  createdAt: Date | null;
  lastSeenAt: Date | null;
  expiresAt: Date;
  userAgent: string | null;
  ip: string | null;
  via: string | null;
  current: boolean;
}

function promisify(fn: (cb: (err?: unknown) => void) => void): Promise<void> {
  return new Promise((resolve, reject) => fn((err) => (err ? reject(err) : resolve())));
}

export const sessionHandle = (sid: string) => createHash('sha256').update(sid).digest('hex').slice(0, 32);

// Writing "last seen" on every request would rewrite the row each time; once a minute is enough.
const LAST_SEEN_RESOLUTION_MS = 60_000;

/**
 * Console sessions: stored server-side in PostgreSQL (connect-pg-simple), identified by an
 * HttpOnly SameSite=Lax cookie. The idle timeout is the cookie/store expiry, renewed on every
 * request; the absolute timeout is checked here against the session's creation time, and the
 * user's token version against the one the session was created with.
 */
@Injectable()
export class SessionService {
  constructor(
    private readonly users: UsersService,
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig,
  ) {}

  async current(req: Request): Promise<SessionState> {
    const session = req.session;
    if (!session?.userId) return { user: null, reason: null };
    const absoluteMs = this.config.session.absoluteHours * 3600_000;
    if (!session.createdAt || Date.now() - session.createdAt > absoluteMs) {
      await this.destroy(req);
      return { user: null, reason: 'session reached its absolute lifetime' };
    }
    const user = await this.users.findActive(session.userId);
    if (!user || user.disabledAt) {
      await this.destroy(req);
      return { user: null, reason: user ? 'user disabled' : 'user removed' };
    }
    if ((session.tokenVersion ?? 0) !== user.tokenVersion) {
      await this.destroy(req);
      return { user: null, reason: 'session ended by a password, role or sign-out-everywhere change' };
    }
    if (!session.lastSeenAt || Date.now() - session.lastSeenAt > LAST_SEEN_RESOLUTION_MS) {
      session.lastSeenAt = Date.now();
    }
    return {
      user: {
        id: user.id,
        email: user.email,
        role: user.role,
        via: 'session',
        mustChangePassword: user.mustChangePassword,
      },
    };
  }

  /** A new session id on sign-in, so that an id planted before sign-in is worthless after. */
  async signIn(
    req: Request,
    user: User,
    extra: { via: 'password' | 'sso'; mfaVerified?: boolean; mfaEnrolmentRequired?: boolean } = { via: 'password' },
  ): Promise<void> {
    await promisify((cb) => req.session.regenerate(cb));
    req.session.userId = user.id;
    req.session.createdAt = Date.now();
    req.session.lastSeenAt = Date.now();
    req.session.tokenVersion = user.tokenVersion;
    req.session.userAgent = userAgent(req);
    req.session.ip = clientIp(req);
    req.session.via = extra.via;
    if (extra.mfaVerified) req.session.mfaVerifiedAt = Date.now();
    if (extra.mfaEnrolmentRequired) req.session.mfaEnrolmentRequired = true;
    await promisify((cb) => req.session.save(cb));
  }

  async destroy(req: Request): Promise<void> {
    if (!req.session) return;
    await promisify((cb) => req.session.destroy(cb));
  }

  async listFor(userId: string, currentSid: string | undefined): Promise<SessionSummary[]> {
    const rows = (await this.dataSource.query(
      `SELECT sid, sess, expire FROM sessions WHERE sess->>'userId' = $1 AND expire > now()`,
      [userId],
    )) as { sid: string; sess: SessionLike; expire: Date }[];
    return rows
      .map((row) => ({
        handle: sessionHandle(row.sid),
        createdAt: row.sess.createdAt ? new Date(row.sess.createdAt) : null,
        lastSeenAt: row.sess.lastSeenAt ? new Date(row.sess.lastSeenAt) : null,
        expiresAt: row.expire,
        userAgent: row.sess.userAgent ?? null,
        ip: row.sess.ip ?? null,
        via: row.sess.via ?? null,
        current: row.sid === currentSid,
      }))
      .sort((a, b) => (b.lastSeenAt?.getTime() ?? 0) - (a.lastSeenAt?.getTime() ?? 0));
  }

  /** Ends one of the user's own sessions; false when there is no such session (of theirs). */
  async endOne(userId: string, handle: string): Promise<boolean> {
    const rows = (await this.dataSource.query(`SELECT sid FROM sessions WHERE sess->>'userId' = $1`, [userId])) as {
      sid: string;
    }[];
    const match = rows.find((r) => sessionHandle(r.sid) === handle);
    if (!match) return false;
    await this.dataSource.query(`DELETE FROM sessions WHERE sid = $1`, [match.sid]);
    return true;
  }
}

interface SessionLike {
  createdAt?: number;
  lastSeenAt?: number;
  userAgent?: string | null;
  ip?: string | null;
  via?: string;
}
