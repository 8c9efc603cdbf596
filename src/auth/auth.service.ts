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

  async issueAccessToken(user: User): Promise<AccessTokenResponse> {
    const expiresIn = this.config.jwt.ttlSeconds;
    const accessToken = await this.jwt.signAsync(
      { sub: user.id, role: user.role },
      {
        secret: jwtSecret(this.config, this.secrets),
        expiresIn,
        issuer: JWT_ISSUER,
        audience: JWT_AUDIENCE,
        algorithm: 'HS256',
      },
    );
    return { accessToken, tokenType: 'Bearer', expiresIn };
  }
}
