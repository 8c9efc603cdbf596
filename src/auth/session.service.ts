import { Inject, Injectable } from '@nestjs/common';
import type { Request } from 'express';
import type { KeywardConfig } from '../config/config';
import { KEYWARD_CONFIG } from '../config/config.constants';
import type { User } from './users/user.entity';
import { UsersService } from './users/users.service';
import type { AuthUser } from './auth.types';

export type SessionState = { user: AuthUser } | { user: null; reason: string | null };

function promisify(fn: (cb: (err?: unknown) => void) => void): Promise<void> {
  return new Promise((resolve, reject) => fn((err) => (err ? reject(err) : resolve())));
}

/**
 * Console sessions: stored server-side in PostgreSQL (connect-pg-simple), identified by an
 * HttpOnly SameSite=Lax cookie. The idle timeout is the cookie/store expiry, renewed on every
 * request; the absolute timeout is checked here against the session's creation time.
 */
@Injectable()
export class SessionService {
  constructor(
    private readonly users: UsersService,
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
    return { user: { id: user.id, email: user.email, role: user.role, via: 'session' } };
  }

  /** A new session id on sign-in, so that an id planted before sign-in is worthless after. */
  async signIn(req: Request, user: User): Promise<void> {
    await promisify((cb) => req.session.regenerate(cb));
    req.session.userId = user.id;
    req.session.createdAt = Date.now();
    await promisify((cb) => req.session.save(cb));
  }

  async destroy(req: Request): Promise<void> {
    if (!req.session) return;
    await promisify((cb) => req.session.destroy(cb));
  }
}
