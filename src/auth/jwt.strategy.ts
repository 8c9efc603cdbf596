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
}

/** Bearer access tokens for scripts. The user is re-read on every request, so a disabled
 * user or a changed role takes effect at once rather than when the token expires. */
@Injectable()
export class JwtStrategy extends PassportStrategy(Strategy, 'jwt') {
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
  }

  async validate(payload: AccessTokenPayload): Promise<AuthUser> {
    const user = typeof payload.sub === 'string' ? await this.users.findActive(payload.sub) : null;
    if (!user) throw new UnauthorizedException('the token names a user that does not exist');
    if (user.disabledAt) throw new UnauthorizedException('the user is disabled');
    return { id: user.id, email: user.email, role: user.role, via: 'jwt' };
  }
}
