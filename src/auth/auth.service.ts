import { Inject, Injectable } from '@nestjs/common';
import { JwtService } from '@nestjs/jwt';
import { AuditService } from '../audit/audit.service';
import type { AuditContext } from '../audit/audit.types';
import { ProblemException } from '../common/problem';
import type { KeywardConfig } from '../config/config';
import { KEYWARD_CONFIG } from '../config/config.constants';
import { SecretsService } from '../crypto/secrets.service';
import type { User } from './users/user.entity';
import { UsersService } from './users/users.service';
import { dummyHash, verifyPassword } from './password';
import { OidcRefusal, type OidcIdentity } from './oidc/oidc.client';
import { normalizeEmail } from '../common/validators';
import { IpAllowlistService } from '../security/ip-allowlist.service';
import { SignInLockoutService } from '../security/sign-in-lockout.service';

export const JWT_ISSUER = 'keyward';
export const JWT_AUDIENCE = 'keyward-api';

export interface AccessTokenResponse {
  accessToken: string;
  tokenType: 'Bearer';
  expiresIn: number;
}

export function jwtSecret(config: KeywardConfig, secrets: SecretsService): string {
  return config.jwt.secret ?? secrets.derive('jwt').toString('base64');
}

const INVALID_CREDENTIALS = () =>
  new ProblemException(401, 'invalid-credentials', 'Sign-in failed', 'Invalid email or password.');

@Injectable()
export class AuthService {
  constructor(
    private readonly users: UsersService,
    private readonly audit: AuditService,
    private readonly jwt: JwtService,
    private readonly secrets: SecretsService,
    @Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig,
    private readonly lockout: SignInLockoutService,
    private readonly allowlist: IpAllowlistService,
  ) {}

  /**
   * Checks a password sign-in and records the attempt either way. The caller learns only
   * "invalid email or password"; the audit entry says which it was.
   */
  async signIn(email: string, password: string, context: AuditContext, channel: 'console' | 'api'): Promise<User> {
    const attempted = normalizeEmail(email).slice(0, 320);
    const user = await this.users.findForSignIn(attempted);
    const fail = async (
      reason: string,
      actor = { id: user?.id ?? null, email: attempted, role: user?.role ?? null },
    ) => {
      await this.audit.record(
        { ...context, actor },
        { action: 'auth.signin', outcome: 'failure', status: 401, reason, details: { channel } },
      );
    };

    if (!user) {
      await verifyPassword(await dummyHash(), password);
      await fail('unknown email');
      throw INVALID_CREDENTIALS();
    }
    // A locked account is refused before its password is checked: guessing gains nothing.
    await this.lockout.refuseIfLocked(user, context);
    if (!user.passwordHash) {
      await verifyPassword(await dummyHash(), password);
      await fail('single sign-on account: password sign-in refused');
      throw new ProblemException(
        401,
        'sso-only-account',
        'Sign-in failed',
        'This account signs in through single sign-on only: use “Sign in with SSO”.',
      );
    }
    if (!(await verifyPassword(user.passwordHash, password))) {
      const lockedUntil = await this.lockout.noteFailure(user.id, context.ip);
      await fail(lockedUntil ? `wrong password; account locked until ${lockedUntil.toISOString()}` : 'wrong password');
      throw INVALID_CREDENTIALS();
    }
    if (user.disabledAt) {
      await fail('account disabled');
      throw new ProblemException(401, 'account-disabled', 'Sign-in failed', 'This account is disabled; ask an admin.');
    }
    await this.allowlist.refuseIfOutside(user, context, 'sign-in');
    await this.lockout.noteSuccess(user.id);
    await this.users.recordSignIn(user.id);
    await this.audit.record(
      { ...context, actor: { id: user.id, email: user.email, role: user.role } },
      {
        action: 'auth.signin',
        outcome: 'success',
        status: 200,
        target: { type: 'User', id: user.id },
        details: { channel },
      },
    );
    return user;
  }

  /**
   * A sign-in through OpenID Connect: the linked (or same-email) account, or a new SSO-only
   * account created just in time with the role mapped from the provider's claim. Recorded
   * either way.
   */
  async signInWithSso(identity: OidcIdentity, context: AuditContext): Promise<{ user: User; created: boolean }> {
    const { user, created, roleChanged } = await this.users.findOrCreateSso(
      identity.subject,
      identity.email,
      identity.role,
      identity.emailVerified,
    );
    const actor = { id: user.id, email: user.email, role: user.role };
    if (user.disabledAt) {
      throw new OidcRefusal('account disabled', 'This account is disabled; ask an admin.', user.email);
    }
    if (created) {
      await this.audit.record(
        { ...context, actor },
        {
          action: 'user.sso-provisioned',
          outcome: 'success',
          status: 201,
          target: { type: 'User', id: user.id },
          details: { role: user.role },
        },
      );
    }
    await this.users.recordSignIn(user.id);
    await this.audit.record(
      { ...context, actor },
      {
        action: 'auth.signin',
        outcome: 'success',
        status: 200,
        target: { type: 'User', id: user.id },
        details: { channel: 'sso', created, ...(roleChanged ? { roleFromClaim: user.role } : {}) },
      },
    );
    return { user, created };
  }

  /** Records a single sign-on attempt the provider or Keyward's rules refused. */
  async recordSsoRefusal(refusal: OidcRefusal, context: AuditContext): Promise<void> {
    await this.audit.record(
      { ...context, actor: refusal.email ? { id: null, email: refusal.email, role: null } : null },
      { action: 'auth.signin', outcome: 'failure', status: 403, reason: refusal.reason, details: { channel: 'sso' } },
    );
  }

  /**
   * A bearer JWT with `exp` (always), the user's token version (`tv`) and, when the caller gave
   * a second factor just now, `mfa_at` — which lets sensitive operations through for the
   * step-up window without a code on each request.
   */
  async issueAccessToken(user: User, options: { mfaVerifiedAt?: number } = {}): Promise<AccessTokenResponse> {
    const expiresIn = this.config.jwt.ttlSeconds;
    const claims: Record<string, unknown> = { sub: user.id, role: user.role, tv: user.tokenVersion };
    if (options.mfaVerifiedAt) claims.mfa_at = Math.floor(options.mfaVerifiedAt / 1000);
    const accessToken = await this.jwt.signAsync(claims, {
      secret: jwtSecret(this.config, this.secrets),
      expiresIn,
      issuer: JWT_ISSUER,
      audience: JWT_AUDIENCE,
      algorithm: 'HS256',
    });
    return { accessToken, tokenType: 'Bearer', expiresIn };
  }
}
