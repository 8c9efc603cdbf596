import type { Request, Response } from 'express';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { readCookie } from '../../common/http';

/** A password accepted, the second factor still to come. */
export interface PendingSignIn {
  userId: string;
  /** The user's token version then: a password change in between voids it. */
  tokenVersion: number;
  next?: string;
  /** Expiry, ms. */
  exp: number;
}

const COOKIE = 'keyward.mfa-pending';
const TTL_MS = 5 * 60_000;

/**
 * Between the password and the code of a sign-in, the state sits in a signed HttpOnly cookie
 * for five minutes, so that no session exists until both factors are in.
 */
export class PendingSignIns {
  constructor(
    private readonly key: Buffer,
    private readonly secure: boolean,
  ) {}

  issue(res: Response, pending: Omit<PendingSignIn, 'exp'>): void {
    const body = Buffer.from(JSON.stringify({ ...pending, exp: Date.now() + TTL_MS })).toString('base64url');
    res.cookie(COOKIE, `${body}.${this.mac(body)}`, {
      httpOnly: true,
      sameSite: 'lax',
      secure: this.secure,
      path: '/login',
      maxAge: TTL_MS,
    });
  }

  read(req: Request): PendingSignIn | null {
    const raw = readCookie(req, COOKIE);
    const dot = raw?.lastIndexOf('.') ?? -1;
    if (!raw || dot <= 0) return null;
    const body = raw.slice(0, dot);
    const mac = Buffer.from(raw.slice(dot + 1));
    const expected = Buffer.from(this.mac(body));
    if (mac.length !== expected.length || !timingSafeEqual(mac, expected)) return null;
    try {
      const pending = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as PendingSignIn;
      return pending.exp > Date.now() ? pending : null;
    } catch {
      return null;
    }
  }

  clear(res: Response): void {
    res.clearCookie(COOKIE, { path: '/login' });
  }

  private mac(body: string): string {
    return createHmac('sha256', this.key).update(body).digest('base64url');
  }
}
