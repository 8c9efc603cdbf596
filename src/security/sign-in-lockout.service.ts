import { Inject, Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { AuditService } from '../audit/audit.service';
import type { AuditContext } from '../audit/audit.types';
import { ProblemException } from '../common/problem';
import type { KeywardConfig } from '../config/config';
import { KEYWARD_CONFIG } from '../config/config.constants';

/** Lockouts grow: 1×, 2×, 4× … the configured length, never more than a day. */
const MAX_LOCK_MINUTES = 24 * 60;

export interface LockedAccount {
  userId: string;
  email: string;
  role: string;
  failures: number;
  lockouts: number;
  lockedUntil: Date;
  lastFailureAt: Date | null;
  lastFailureIp: string | null;
}

interface LockRow {
  failures: number;
  lockouts: number;
  locked_until: Date | null;
}

/**
 * Per-account defence against password guessing, besides the per-address limit: guesses spread
 * over many addresses still count against the one account. `threshold` failures within
 * `minutes` lock it for `minutes` (doubling with each further lockout until a sign-in succeeds);
 * it unlocks by itself or when an owner or admin unlocks it. The state lives in PostgreSQL, so
 * every instance sees the same lockout.
 */
@Injectable()
export class SignInLockoutService {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly audit: AuditService,
    @Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig,
  ) {}

  private get settings() {
    return { threshold: this.config.security.lockoutThreshold, minutes: this.config.security.lockoutMinutes };
  }

  /** Refuses (429, audited) a sign-in to a locked account before its password is even checked. */
  async refuseIfLocked(user: { id: string; email: string; role: string }, context: AuditContext): Promise<void> {
    const [row] = await this.dataSource.query<{ locked_until: Date }[]>(
      `SELECT locked_until FROM sign_in_lockouts WHERE user_id = $1 AND locked_until > now()`,
      [user.id],
    );
    if (!row) return;
    const seconds = Math.max(1, Math.ceil((row.locked_until.getTime() - Date.now()) / 1000));
    await this.audit.record(
      { ...context, actor: { id: user.id, email: user.email, role: user.role } },
      {
        action: 'auth.signin',
        outcome: 'denied',
        status: 429,
        reason: 'account locked',
        details: { lockedUntil: row.locked_until.toISOString() },
      },
    );
    throw new ProblemException(
      429,
      'account-locked',
      'Account locked',
      `Too many failed sign-ins to this account. Try again in ${Math.ceil(seconds / 60)} minute(s), or ask an owner or admin to unlock it.`,
      { retryAfter: seconds },
    );
  }

  /** Counts a wrong password; returns when the account got locked by this failure. */
  async noteFailure(userId: string, ip: string | null): Promise<Date | null> {
    const { threshold, minutes } = this.settings;
    const [row] = await this.dataSource.query<LockRow[]>(
      `INSERT INTO sign_in_lockouts AS l (user_id, failures, window_started_at, last_failure_at, last_failure_ip)
         VALUES ($1, 1, now(), now(), $2)
       ON CONFLICT (user_id) DO UPDATE SET
         failures = CASE WHEN l.window_started_at < now() - make_interval(mins => $3) THEN 1 ELSE l.failures + 1 END,
         window_started_at = CASE WHEN l.window_started_at < now() - make_interval(mins => $3)
           THEN now() ELSE l.window_started_at END,
         last_failure_at = now(),
         last_failure_ip = $2
       RETURNING failures, lockouts, locked_until`,
      [userId, ip?.slice(0, 64) ?? null, minutes],
    );
    if (!row || row.failures < threshold) return null;
    const lockMinutes = Math.min(MAX_LOCK_MINUTES, minutes * 2 ** Math.min(row.lockouts, 16));
    const [locked] = await this.dataSource.query<{ locked_until: Date }[]>(
      `UPDATE sign_in_lockouts SET locked_until = now() + make_interval(mins => $2), lockouts = lockouts + 1,
         failures = 0, window_started_at = now()
       WHERE user_id = $1 RETURNING locked_until`,
      [userId, lockMinutes],
    );
    return locked?.locked_until ?? null;
  }

  async noteSuccess(userId: string): Promise<void> {
    await this.dataSource.query(`DELETE FROM sign_in_lockouts WHERE user_id = $1`, [userId]);
  }

  /** Accounts locked right now, for the Security page and the API. */
  async locked(): Promise<LockedAccount[]> {
    const rows = await this.dataSource.query<
      {
        user_id: string;
        email: string;
        role: string;
        failures: number;
        lockouts: number;
        locked_until: Date;
        last_failure_at: Date | null;
        last_failure_ip: string | null;
      }[]
    >(
      `SELECT l.user_id, u.email, u.role, l.failures, l.lockouts, l.locked_until, l.last_failure_at, l.last_failure_ip
         FROM sign_in_lockouts l JOIN users u ON u.id = l.user_id
        WHERE l.locked_until > now() ORDER BY l.locked_until DESC LIMIT 200`,
    );
    return rows.map((r) => ({
      userId: r.user_id,
      email: r.email,
      role: r.role,
      failures: r.failures,
      lockouts: r.lockouts,
      lockedUntil: r.locked_until,
      lastFailureAt: r.last_failure_at,
      lastFailureIp: r.last_failure_ip,
    }));
  }

  /** Lifts a lockout now (an owner's or admin's decision; audited by the route). */
  async unlock(userId: string): Promise<{ userId: string; wasLocked: boolean }> {
    const rows = await this.dataSource.query<{ locked: boolean }[][]>(
      `DELETE FROM sign_in_lockouts WHERE user_id = $1 RETURNING locked_until > now() AS locked`,
      [userId],
    );
    // DELETE … RETURNING answers [rows, count] through TypeORM's postgres driver.
    const returned = (Array.isArray(rows[0]) ? rows[0] : rows) as unknown as { locked: boolean }[];
    return { userId, wasLocked: returned.some((r) => r.locked) };
  }
}
