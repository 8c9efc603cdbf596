import { ExecutionContext, Injectable } from '@nestjs/common';
import { AuthGuard } from '@nestjs/passport';

/** Why a bearer token was refused, in words an operator can act on. */
export class BearerRejected extends Error {
  constructor(
    readonly reason: string,
    readonly detail: string,
  ) {
    super(reason);
    this.name = 'BearerRejected';
  }
}

function explain(err: unknown, info: unknown): BearerRejected {
  if (err instanceof Error) return new BearerRejected(err.message, `Access denied: ${err.message}.`);
  const e = info as { name?: string; message?: string } | undefined;
  switch (e?.name) {
    case 'TokenExpiredError':
      return new BearerRejected(
        'token expired',
        'The access token has expired; get a new one from POST /api/auth/token.',
      );
    case 'NotBeforeError':
      return new BearerRejected('token not yet valid', 'The access token is not valid yet.');
    case 'JsonWebTokenError':
      return new BearerRejected(
        `invalid token (${e.message})`,
        'The access token is invalid (bad signature, issuer, audience or format).',
      );
  }
  if (e?.message === 'No auth token') {
    return new BearerRejected(
      'missing bearer token',
      'Send Authorization: Bearer <accessToken> (from POST /api/auth/token).',
    );
  }
  return new BearerRejected('invalid token', 'The access token is invalid.');
}

@Injectable()
export class JwtAuthGuard extends AuthGuard('jwt') {
  override handleRequest<TUser>(err: unknown, user: TUser, info: unknown, _context: ExecutionContext): TUser {
    if (err || !user) throw explain(err, info);
    return user;
  }
}
