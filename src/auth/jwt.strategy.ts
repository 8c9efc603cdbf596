import { Inject, Injectable, UnauthorizedException } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import { ExtractJwt, Strategy } from 'passport-jwt';
import type { KeywardConfig } from '../config/config';
import { KEYWARD_CONFIG } from '../config/config.constants';
import { SecretsService } from '../crypto/secrets.service';
import { UsersService } from './users/users.service';
import { JWT_AUDIENCE, JWT_ISSUER, jwtSecret } from './auth.service';
import type { AuthUser } from './auth.types';

interface AccessTokenPayload {
  sub: string;
  role: string;
  exp?: unknown;
  tv?: unknown;
  mfa_at?: unknown;
}

// Clock skew tolerated between the instance that signed and the one that checks.
const SKEW_SECONDS = 60;

/** Bearer access tokens for scripts. The user is re-read on every request, so a disabled
 * user or a changed role takes effect at once rather than when the token expires. */
@Injectable()
export class JwtStrategy extends PassportStrategy(Strategy, 'jwt') {
  private readonly maxTtlSeconds: number;

  constructor(
    @Inject(KEYWARD_CONFIG) config: KeywardConfig,
    secrets: SecretsService,
    private readonly users: UsersService,
  ) {
    super({
      jwtFromRequest: ExtractJwt.fromAuthHeaderAsBearerToken(),
      secretOrKey: jwtSecret(config, secrets),
      issuer: JWT_ISSUER,
      audience: JWT_AUDIENCE,
      algorithms: ['HS256'],
    });
    this.maxTtlSeconds = config.jwt.ttlSeconds;
  }

  async validate(payload: AccessTokenPayload): Promise<AuthUser> {
    // A validly signed token must still expire, and not later than Keyward would have let it.
    if (typeof payload.exp !== 'number') throw new UnauthorizedException('the token has no expiry (exp)');
    if (payload.exp > Date.now() / 1000 + this.maxTtlSeconds + SKEW_SECONDS) {
      throw new UnauthorizedException('the token expires later than the configured maximum lifetime');
    }
    const user = typeof payload.sub === 'string' ? await this.users.findActive(payload.sub) : null;
    if (!user) throw new UnauthorizedException('the token names a user that does not exist');
    if (user.disabledAt) throw new UnauthorizedException('the user is disabled');
    if ((typeof payload.tv === 'number' ? payload.tv : 0) !== user.tokenVersion) {
      throw new UnauthorizedException(
        'the token was issued before a password change, role change or sign-out everywhere',
      );
    }
    return {
      id: user.id,
      email: user.email,
      role: user.role,
      via: 'jwt',
      mfaAt: typeof payload.mfa_at === 'number' ? payload.mfa_at * 1000 : undefined,
    };
  }
}
