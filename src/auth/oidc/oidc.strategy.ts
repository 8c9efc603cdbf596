import { Injectable, Optional, Inject, NotFoundException, type ExecutionContext } from '@nestjs/common';
import { AuthGuard, PassportStrategy } from '@nestjs/passport';
import type { Request } from 'express';
import { Strategy } from 'passport-strategy';
import { auditContext } from '../../audit/audit-context';
import { safeLocalPath } from '../../common/problem.filter';
import { AuthService } from '../auth.service';
import type { User } from '../users/user.entity';
import { OidcClient, OidcRefusal, type OidcIdentity } from './oidc.client';

export const OIDC_CLIENT = Symbol('OIDC_CLIENT');

type Verify = (req: Request, identity: OidcIdentity, done: (err: unknown, user?: unknown) => void) => void;

/**
 * A passport strategy over openid-client: without `code` (or `error`) in the query it sends
 * the browser to the provider; with it, it completes the flow and hands the identity to
 * `verify`. Refusals reach the route as `{ refusal }` so the sign-in page can say why.
 */
class OpenIdConnectStrategy extends Strategy {
  constructor(
    private readonly client: OidcClient,
    private readonly verify: Verify,
  ) {
    super();
  }

  override authenticate(req: Request): void {
    const returning = typeof req.query.code === 'string' || typeof req.query.error === 'string';
    const res = req.res!;
    if (!returning) {
      const next = safeLocalPath(typeof req.query.next === 'string' ? req.query.next : undefined);
      this.client.start(res, next).then(
        (url) => this.redirect(url, 303),
        (error: unknown) => this.refuseOrError(error),
      );
      return;
    }
    this.client.finish(req, res).then(
      (identity) =>
        this.verify(req, identity, (err, user) => {
          if (err) return this.refuseOrError(err);
          this.success({ ...(user as object), next: identity.next });
        }),
      (error: unknown) => this.refuseOrError(error),
    );
  }

  private refuseOrError(error: unknown): void {
    if (error instanceof OidcRefusal) this.success({ refusal: error });
    else this.error(error as Error);
  }
}

export type OidcResult = { user: User; created: boolean; next?: string } | { refusal: OidcRefusal };

/** Passport strategy `'oidc'`; created only when single sign-on is configured. */
export class OidcStrategy extends PassportStrategy(OpenIdConnectStrategy, 'oidc') {
  constructor(
    client: OidcClient,
    private readonly auth: AuthService,
  ) {
    super(client);
  }

  async validate(req: Request, identity: OidcIdentity): Promise<{ user: User; created: boolean }> {
    return this.auth.signInWithSso(identity, auditContext(req));
  }
}

/** Runs the `'oidc'` strategy; a 404 where single sign-on is not configured. */
@Injectable()
export class OidcGuard extends AuthGuard('oidc') {
  constructor(@Optional() @Inject(OIDC_CLIENT) private readonly client: OidcClient | null) {
    super();
  }

  override canActivate(context: ExecutionContext) {
    if (!this.client) throw new NotFoundException('Single sign-on is not configured.');
    return super.canActivate(context);
  }
}
