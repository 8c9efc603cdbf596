import { Inject, Injectable, Optional } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import { RATE_LIMITER } from '../access-tokens/access-tokens.constants';
import { AccessTokensService, tokenHint, type GatewayPrincipal } from '../access-tokens/access-tokens.service';
import type { RateLimiter } from '../access-tokens/rate-limiter';
import { FAILED_TOKEN_THROTTLE, type FailedTokenThrottle } from '../access-tokens/failed-token-throttle';
import { GatewayProblem } from './gateway-problem';

/**
 * Who is calling: a `kw_` access token (as `Authorization: Bearer` or `x-api-key`, the way the
 * OpenAI and Anthropic SDKs send their key), from an address the token allows, within its rate.
 */
@Injectable()
export class Admission {
  constructor(
    private readonly tokens: AccessTokensService,
    @Inject(RATE_LIMITER) private readonly limiter: RateLimiter,
    @Optional() @Inject(FAILED_TOKEN_THROTTLE) private readonly failures?: FailedTokenThrottle,
  ) {}

  /** The raw token the request carries, if any (for the audit hint of a refusal). */
  credentialOf(req: IncomingMessage): string | undefined {
    const authorization = req.headers.authorization;
    if (authorization && /^bearer\s+kw_/i.test(authorization)) return authorization.replace(/^bearer\s+/i, '').trim();
    const apiKey = req.headers['x-api-key'];
    if (typeof apiKey === 'string' && apiKey.startsWith('kw_')) return apiKey.trim();
    return undefined;
  }

  hintOf(req: IncomingMessage): string | null {
    const raw = this.credentialOf(req);
    return raw ? tokenHint(raw) : null;
  }

  async admit(req: IncomingMessage, ip: string): Promise<GatewayPrincipal> {
    // An address that keeps sending bad tokens is refused before any lookup: guessing costs it.
    if (this.failures?.isBlocked(ip)) {
      throw new GatewayProblem(
        429,
        'too-many-failed-tokens',
        'Too many failed access tokens',
        'This address sent too many unknown or revoked access tokens; try again later.',
        { 'retry-after': String(this.failures.retryAfterSeconds(ip)) },
        'token-throttled',
      );
    }
    const raw = this.credentialOf(req);
    const principal = raw ? await this.tokens.resolve(raw) : null;
    if (!principal) {
      if (raw) this.failures?.noteFailure(ip);
      throw new GatewayProblem(
        401,
        'unauthenticated',
        'Access token required',
        raw
          ? 'The access token is unknown, revoked or expired.'
          : 'Send a Keyward access token (kw_…) as "Authorization: Bearer" or "x-api-key".',
        { 'www-authenticate': 'Bearer realm="keyward"' },
        raw ? 'token-refused' : 'token-missing',
      );
    }
    if (!this.tokens.ipAllowed(principal, ip)) {
      throw new GatewayProblem(
        403,
        'ip-not-allowed',
        'Address not allowed',
        'This access token is not allowed from this address.',
        {},
        'ip-not-allowed',
      );
    }
    return principal;
  }

  /**
   * The token's per-minute rate, checked once the request is known to be one Keyward forwards.
   * Undefined, not a promise, for a token without a rate: the usual call waits for nothing.
   */
  rate(principal: GatewayPrincipal): Promise<void> | undefined {
    return principal.rateLimitPerMinute ? this.takeRate(principal, principal.rateLimitPerMinute) : undefined;
  }

  private async takeRate(principal: GatewayPrincipal, perMinute: number): Promise<void> {
    const taken = await this.limiter.take(`token:${principal.id}`, perMinute);
    if (!taken.allowed) {
      throw new GatewayProblem(
        429,
        'rate-limited',
        'Too many requests',
        `This access token may make ${perMinute} requests a minute; try again in ${taken.retryAfterSeconds} s.`,
        { 'retry-after': String(taken.retryAfterSeconds) },
        'rate-limited',
      );
    }
  }

  touch(principal: GatewayPrincipal): void {
    this.tokens.touch(principal.id);
  }

  allowsModel(principal: GatewayPrincipal, provider: string, model: string): boolean {
    return this.tokens.allows(principal, provider, model);
  }
}
