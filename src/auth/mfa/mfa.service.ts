import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { randomInt } from 'node:crypto';
import * as OTPAuth from 'otpauth';
import * as QRCode from 'qrcode';
import { DataSource } from 'typeorm';
import { AuditService } from '../../audit/audit.service';
import type { AuditContext } from '../../audit/audit.types';
import { conflict, ProblemException } from '../../common/problem';
import { SecretsService } from '../../crypto/secrets.service';

export const RECOVERY_CODE_COUNT = 10;
const PERIOD_SECONDS = 30;
// Letters and digits that cannot be mistaken for one another when read off paper.
const RECOVERY_ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789';

export interface Enrolment {
  /** Base32, for typing into an app by hand. Shown once, during enrolment, never again. */
  secret: string;
  otpauthUrl: string;
  /** The otpauth URL as a QR code: an SVG data URI (the CSP allows `data:` images only). */
  qrCode: string;
}

export interface MfaStatus {
  enrolled: boolean;
  confirmedAt: Date | null;
  recoveryCodesLeft: number;
  requiredForAll: boolean;
}

export type VerifyOutcome = 'totp' | 'recovery' | null;

const aadFor = (factorId: string) => `mfa_factor:${factorId}`;

function totpFor(secret: OTPAuth.Secret, label: string): OTPAuth.TOTP {
  return new OTPAuth.TOTP({ issuer: 'Keyward', label, algorithm: 'SHA1', digits: 6, period: PERIOD_SECONDS, secret });
}

/** Lower case, no separators: what a person types is compared in one spelling. */
export function normaliseRecoveryCode(code: string): string {
  return code.toLowerCase().replace(/[\s-]/g, '');
}

export function generateRecoveryCode(): string {
  const pick = () => RECOVERY_ALPHABET[randomInt(RECOVERY_ALPHABET.length)];
  const half = () => Array.from({ length: 5 }, pick).join('');
  return `${half()}-${half()}`;
}

/**
 * Second factors: TOTP (RFC 6238) with the secret sealed under the master key, and single-use
 * recovery codes stored as keyed hashes. Every step is audited here, so no caller can forget.
 */
@Injectable()
export class MfaService {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly secrets: SecretsService,
    private readonly audit: AuditService,
  ) {}

  async status(userId: string): Promise<MfaStatus> {
    const [row] = (await this.dataSource.query(
      `SELECT f.confirmed_at,
              (SELECT count(*) FROM mfa_recovery_codes r WHERE r.user_id = $1 AND r.used_at IS NULL)::int AS left,
              (SELECT required_for_all FROM mfa_policy) AS required
         FROM (SELECT 1) one LEFT JOIN mfa_factors f ON f.user_id = $1 AND f.confirmed_at IS NOT NULL`,
      [userId],
    )) as { confirmed_at: Date | null; left: number; required: boolean | null }[];
    return {
      enrolled: row.confirmed_at !== null,
      confirmedAt: row.confirmed_at,
      recoveryCodesLeft: row.confirmed_at ? row.left : 0,
      requiredForAll: row.required === true,
    };
  }

  async isEnrolled(userId: string): Promise<boolean> {
    const rows = (await this.dataSource.query(
      `SELECT 1 FROM mfa_factors WHERE user_id = $1 AND confirmed_at IS NOT NULL`,
      [userId],
    )) as unknown[];
    return rows.length > 0;
  }

  /** At sign-in: MFA is mandatory and this user has no second factor yet. */
  async mustEnrol(userId: string): Promise<boolean> {
    return (await this.requiredForAll()) && !(await this.isEnrolled(userId));
  }

  async requiredForAll(): Promise<boolean> {
    const [row] = (await this.dataSource.query(`SELECT required_for_all FROM mfa_policy`)) as {
      required_for_all: boolean;
    }[];
    return row?.required_for_all === true;
  }

  /**
   * Starts (or restarts) enrolment with a fresh secret. A confirmed factor is never replaced
   * here: it must be disabled first, with a code.
   */
  async beginEnrolment(user: { id: string; email: string }, context: AuditContext): Promise<Enrolment> {
    if (await this.isEnrolled(user.id)) {
      throw conflict(
        'mfa-already-enrolled',
        'A second factor is already set up',
        'Disable the current authenticator (with a code) before setting up another.',
      );
    }
    const secret = new OTPAuth.Secret({ size: 20 });
    const id = (
      (await this.dataSource.query(`SELECT gen_random_uuid() AS id`)) as {
        id: string;
      }[]
    )[0].id;
    const envelope = this.secrets.seal(secret.base32, aadFor(id));
    await this.dataSource.transaction(async (manager) => {
      await manager.query(`DELETE FROM mfa_factors WHERE user_id = $1 AND confirmed_at IS NULL`, [user.id]);
      await manager.query(`INSERT INTO mfa_factors (id, user_id, secret_envelope) VALUES ($1, $2, $3)`, [
        id,
        user.id,
        envelope,
      ]);
    });
    const otpauthUrl = totpFor(secret, user.email).toString();
    const svg = await QRCode.toString(otpauthUrl, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
    await this.audit.record(context, {
      action: 'mfa.enrol',
      outcome: 'success',
      status: 200,
      target: { type: 'User', id: user.id },
      details: { kind: 'totp' },
    });
    return {
      secret: secret.base32,
      otpauthUrl,
      qrCode: `data:image/svg+xml;base64,${Buffer.from(svg).toString('base64')}`,
    };
  }

  /** Confirms enrolment with a first code and returns the recovery codes (shown once). */
  async confirm(user: { id: string; email: string }, code: string, context: AuditContext): Promise<string[]> {
    const factor = await this.factor(user.id, false);
    const step = factor ? this.matchingStep(factor, user.email, code) : null;
    if (!factor || step === null) {
      await this.audit.record(context, {
        action: 'mfa.confirm',
        outcome: 'failure',
        status: 400,
        target: { type: 'User', id: user.id },
        reason: factor ? 'wrong code' : 'no enrolment in progress',
      });
      throw new ProblemException(
        400,
        factor ? 'mfa-code-invalid' : 'mfa-not-started',
        factor ? 'Wrong code' : 'No enrolment in progress',
        factor
          ? 'That code does not match; check the time on your device and enter the current code.'
          : 'Start setting up an authenticator first.',
      );
    }
    const codes = Array.from({ length: RECOVERY_CODE_COUNT }, generateRecoveryCode);
    await this.dataSource.transaction(async (manager) => {
      await manager.query(
        `UPDATE mfa_factors SET confirmed_at = now(), last_used_step = $2 WHERE id = $1 AND confirmed_at IS NULL`,
        [factor.id, step],
      );
      await this.storeRecoveryCodes(manager, user.id, codes);
    });
    await this.audit.record(context, {
      action: 'mfa.confirm',
      outcome: 'success',
      status: 200,
      target: { type: 'User', id: user.id },
      details: { recoveryCodes: RECOVERY_CODE_COUNT },
    });
    return codes;
  }

  /**
   * Checks a TOTP code (each 30-second code is accepted once) or a recovery code (used up).
   * Records the verification either way.
   */
  async verify(user: { id: string; email: string }, code: string, context: AuditContext): Promise<VerifyOutcome> {
    const outcome = await this.check(user, code);
    await this.audit.record(context, {
      action: outcome === 'recovery' ? 'mfa.recovery-code-used' : 'mfa.verify',
      outcome: outcome ? 'success' : 'failure',
      status: outcome ? 200 : 401,
      target: { type: 'User', id: user.id },
      reason: outcome ? undefined : 'wrong or reused code',
      details: outcome === 'recovery' ? { recoveryCodesLeft: (await this.status(user.id)).recoveryCodesLeft } : {},
    });
    return outcome;
  }

  /** Turns the second factor off; needs a current code (or a recovery code). */
  async disable(user: { id: string; email: string }, code: string, context: AuditContext): Promise<void> {
    if (!(await this.isEnrolled(user.id))) {
      throw conflict('mfa-not-enrolled', 'No second factor is set up', 'There is nothing to disable.');
    }
    if (await this.requiredForAll()) {
      await this.audit.record(context, {
        action: 'mfa.disable',
        outcome: 'denied',
        status: 409,
        target: { type: 'User', id: user.id },
        reason: 'MFA is required for everyone',
      });
      throw conflict(
        'mfa-required-for-all',
        'MFA is required for everyone',
        'An owner has made a second factor mandatory; it cannot be turned off.',
      );
    }
    if (!(await this.verify(user, code, context))) throw this.wrongCode();
    await this.dataSource.transaction(async (manager) => {
      await manager.query(`DELETE FROM mfa_factors WHERE user_id = $1`, [user.id]);
      await manager.query(`DELETE FROM mfa_recovery_codes WHERE user_id = $1`, [user.id]);
    });
    await this.audit.record(context, {
      action: 'mfa.disable',
      outcome: 'success',
      status: 200,
      target: { type: 'User', id: user.id },
    });
  }

  /** Replaces all recovery codes with new ones; needs a current code. */
  async regenerateRecoveryCodes(
    user: { id: string; email: string },
    code: string,
    context: AuditContext,
  ): Promise<string[]> {
    if (!(await this.isEnrolled(user.id))) {
      throw conflict('mfa-not-enrolled', 'No second factor is set up', 'Set up an authenticator first.');
    }
    if (!(await this.verify(user, code, context))) throw this.wrongCode();
    const codes = Array.from({ length: RECOVERY_CODE_COUNT }, generateRecoveryCode);
    await this.dataSource.transaction(async (manager) => {
      await manager.query(`DELETE FROM mfa_recovery_codes WHERE user_id = $1`, [user.id]);
      await this.storeRecoveryCodes(manager, user.id, codes);
    });
    await this.audit.record(context, {
      action: 'mfa.recovery-codes-regenerated',
      outcome: 'success',
      status: 200,
      target: { type: 'User', id: user.id },
    });
    return codes;
  }

  /** Owners only: make a second factor mandatory for every account (or not). */
  async setRequiredForAll(
    required: boolean,
    actor: { id: string; email: string; role: string },
    context: AuditContext,
  ): Promise<void> {
    if (actor.role !== 'owner') {
      throw new ProblemException(403, 'forbidden', 'Not allowed', 'Only an owner can change the MFA policy.');
    }
    await this.dataSource.query(
      `INSERT INTO mfa_policy (id, required_for_all, updated_by, updated_at) VALUES (true, $1, $2, now())
       ON CONFLICT (id) DO UPDATE SET required_for_all = $1, updated_by = $2, updated_at = now()`,
      [required, actor.email],
    );
    await this.audit.record(context, {
      action: 'mfa.required-for-all',
      outcome: 'success',
      status: 200,
      details: { requiredForAll: required },
    });
  }

  wrongCode(): ProblemException {
    return new ProblemException(
      401,
      'mfa-code-invalid',
      'Wrong code',
      'That code is wrong or was already used; enter the current code from your authenticator or an unused recovery code.',
    );
  }

  private async check(user: { id: string; email: string }, raw: string): Promise<VerifyOutcome> {
    const code = raw.trim();
    if (/^\d{6}$/.test(code)) {
      const factor = await this.factor(user.id, true);
      const step = factor ? this.matchingStep(factor, user.email, code) : null;
      if (!factor || step === null) return null;
      // Atomic: of two requests with the same code, one wins.
      const [, count] = (await this.dataSource.query(
        `UPDATE mfa_factors SET last_used_step = $2 WHERE id = $1 AND last_used_step < $2`,
        [factor.id, step],
      )) as [unknown, number];
      return count === 1 ? 'totp' : null;
    }
    const normalised = normaliseRecoveryCode(code);
    if (!/^[a-z0-9]{10}$/.test(normalised) || !(await this.isEnrolled(user.id))) return null;
    const [, used] = (await this.dataSource.query(
      `UPDATE mfa_recovery_codes SET used_at = now() WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL`,
      [user.id, this.hashRecoveryCode(user.id, normalised)],
    )) as [unknown, number];
    return used === 1 ? 'recovery' : null;
  }

  private async factor(
    userId: string,
    confirmed: boolean,
  ): Promise<{ id: string; secret: OTPAuth.Secret; lastUsedStep: number } | null> {
    const [row] = (await this.dataSource.query(
      `SELECT id, secret_envelope, last_used_step FROM mfa_factors
        WHERE user_id = $1 AND (confirmed_at IS NOT NULL) = $2`,
      [userId, confirmed],
    )) as { id: string; secret_envelope: Buffer; last_used_step: string }[];
    if (!row) return null;
    const base32 = this.secrets.open(row.secret_envelope, aadFor(row.id)).toString('utf8');
    return { id: row.id, secret: OTPAuth.Secret.fromBase32(base32), lastUsedStep: Number(row.last_used_step) };
  }

  /** The time step a code belongs to (±1 step of clock drift), or null. */
  private matchingStep(factor: { secret: OTPAuth.Secret; lastUsedStep: number }, label: string, code: string) {
    if (!/^\d{6}$/.test(code.trim())) return null;
    const now = Date.now();
    const delta = totpFor(factor.secret, label).validate({ token: code.trim(), timestamp: now, window: 1 });
    if (delta === null) return null;
    const step = Math.floor(now / 1000 / PERIOD_SECONDS) + delta;
    return step > factor.lastUsedStep ? step : null;
  }

  private hashRecoveryCode(userId: string, normalised: string): string {
    return this.secrets.hmac('mfa-recovery-code', `${userId}:${normalised}`);
  }

  private async storeRecoveryCodes(
    manager: { query: (sql: string, params: unknown[]) => Promise<unknown> },
    userId: string,
    codes: string[],
  ): Promise<void> {
    for (const code of codes) {
      await manager.query(`INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES ($1, $2)`, [
        userId,
        this.hashRecoveryCode(userId, normaliseRecoveryCode(code)),
      ]);
    }
  }
}
