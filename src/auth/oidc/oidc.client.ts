import { Logger } from '@nestjs/common';
import type { Request, Response } from 'express';
import { createHmac, timingSafeEqual } from 'node:crypto';
import * as oidc from 'openid-client';
import { readCookie } from '../../common/http';
import type { OidcConfig } from '../../config/config';
import { ROLES, type Role } from '../roles';

/** What Keyward keeps between sending someone to the provider and their return. */
interface Flow {
  state: string;
  nonce: string;
  verifier: string;
  next?: string;
  /** Expiry, ms. */
  exp: number;
}

export interface OidcIdentity {
  /** `<issuer> <sub>`: stable even if the email changes at the provider. */
  subject: string;
  email: string;
  /** The provider said the email is verified (`email_verified: true`), not merely did not deny it. */
  emailVerified: boolean;
  role: Role;
}

/** A refusal a person can read on the sign-in page; `reason` is for the audit log. */
export class OidcRefusal extends Error {
  constructor(
    readonly reason: string,
    readonly detail: string,
    readonly email?: string,
  ) {
    super(reason);
    this.name = 'OidcRefusal';
  }
}

const FLOW_COOKIE = 'keyward.oidc';
const FLOW_TTL_MS = 10 * 60_000;
const CALLBACK_PATH = '/auth/oidc/callback';
const SCOPE = 'openid email profile';

const isLoopback = (url: URL) => ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);

/**
 * The OpenID Connect relying party (openid-client): discovery, the authorization-code flow
 * with PKCE, state and nonce, and turning the provider's claims into an email and a role.
 *
 * The flow's secrets wait in a short-lived signed HttpOnly cookie rather than a session, so
 * that nobody has a session row before they have signed in.
 */
export class OidcClient {
  private readonly logger = new Logger('Oidc');
  private discovered?: Promise<oidc.Configuration>;

  constructor(
    readonly settings: OidcConfig,
    private readonly publicUrl: string,
    private readonly cookieKey: Buffer,
    private readonly cookieSecure: boolean,
  ) {}

  get redirectUri(): string {
    return `${this.publicUrl}${CALLBACK_PATH}`;
  }

  /** Discovery happens on first use and is retried after a failure (the provider may be down). */
  private configuration(): Promise<oidc.Configuration> {
    this.discovered ??= this.discover().catch((error: unknown) => {
      this.discovered = undefined;
      this.logger.error({ err: error, issuer: this.settings.issuer }, 'OpenID Connect discovery failed');
      throw new OidcRefusal(
        'provider unreachable',
        'The single sign-on provider cannot be reached right now; try again, or sign in with a password.',
      );
    });
    return this.discovered;
  }

  private async discover(): Promise<oidc.Configuration> {
    const issuer = new URL(this.settings.issuer);
    // Plain http is for an identity provider on this machine only (development and tests).
    const insecure = issuer.protocol === 'http:' && isLoopback(issuer);
    const auth = this.settings.clientSecret ? oidc.ClientSecretBasic(this.settings.clientSecret) : oidc.None();
    return oidc.discovery(
      issuer,
      this.settings.clientId,
      { redirect_uris: [this.redirectUri], response_types: ['code'] },
      auth,
      insecure ? { execute: [oidc.allowInsecureRequests] } : undefined,
    );
  }

  /** The provider's authorization URL for a new sign-in; remembers the flow in a cookie. */
  async start(res: Response, next: string | undefined): Promise<string> {
    const config = await this.configuration();
    const flow: Flow = {
      state: oidc.randomState(),
      nonce: oidc.randomNonce(),
      verifier: oidc.randomPKCECodeVerifier(),
      next,
      exp: Date.now() + FLOW_TTL_MS,
    };
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: this.redirectUri,
      scope: SCOPE,
      response_type: 'code',
      state: flow.state,
      nonce: flow.nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(flow.verifier),
      code_challenge_method: 'S256',
    });
    res.cookie(FLOW_COOKIE, this.seal(flow), {
      httpOnly: true,
      // Lax: the provider sends the person back with a top-level GET, which carries it.
      sameSite: 'lax',
      secure: this.cookieSecure,
      path: '/auth/oidc',
      maxAge: FLOW_TTL_MS,
    });
    return url.href;
  }

  /** Completes the flow from the callback request: the identity, or an OidcRefusal. */
  async finish(req: Request, res: Response): Promise<OidcIdentity & { next?: string }> {
    const flow = this.unseal(readCookie(req, FLOW_COOKIE));
    res.clearCookie(FLOW_COOKIE, { path: '/auth/oidc' });
    const error = typeof req.query.error === 'string' ? req.query.error : undefined;
    if (error) {
      throw new OidcRefusal(
        `provider answered ${error.slice(0, 64)}`,
        'The single sign-on provider refused the sign-in.',
      );
    }
    if (!flow) {
      throw new OidcRefusal(
        'missing or expired sign-in state',
        'The single sign-on attempt expired or did not start here; try again.',
      );
    }
    const config = await this.configuration();
    // The URL the provider redirected to, as Keyward is reached (not as a Host header claims).
    const current = new URL(req.originalUrl, this.publicUrl);
    let claims: Record<string, unknown>;
    try {
      const tokens = await oidc.authorizationCodeGrant(config, current, {
        pkceCodeVerifier: flow.verifier,
        expectedState: flow.state,
        expectedNonce: flow.nonce,
        idTokenExpected: true,
      });
      claims = { ...(tokens.claims() ?? {}) };
      if (config.serverMetadata().userinfo_endpoint) {
        const info = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub as string);
        claims = { ...info, ...claims };
      }
    } catch (err) {
      this.logger.warn({ err }, 'OpenID Connect callback refused');
      throw new OidcRefusal(
        `token exchange failed: ${(err as Error).message?.slice(0, 200) ?? 'unknown'}`,
        'Single sign-on could not be completed; try again.',
      );
    }
    return { ...this.identityFrom(claims, config.serverMetadata().issuer), next: flow.next };
  }

  /** The provider's sign-out page (RP-initiated logout), if it has one. */
  async endSessionUrl(): Promise<string | undefined> {
    try {
      const config = await this.configuration();
      if (!config.serverMetadata().end_session_endpoint) return undefined;
      return oidc.buildEndSessionUrl(config, {
        client_id: this.settings.clientId,
        post_logout_redirect_uri: `${this.publicUrl}/login`,
      }).href;
    } catch {
      return undefined;
    }
  }

  /** Email (verified, in an allowed domain) and role (mapped from the claim) of a sign-in. */
  identityFrom(claims: Record<string, unknown>, issuer: string): OidcIdentity {
    const email = typeof claims.email === 'string' ? claims.email.trim().toLowerCase() : '';
    if (!email || !/^[^@\s]+@[^@\s]+$/.test(email) || email.length > 320) {
      throw new OidcRefusal('no email claim', 'The single sign-on provider did not say who you are (no email).');
    }
    if (claims.email_verified === false) {
      throw new OidcRefusal('email not verified', 'Your email is not verified at the single sign-on provider.', email);
    }
    const domain = email.slice(email.lastIndexOf('@') + 1);
    const { allowedDomains } = this.settings;
    if (allowedDomains.length > 0 && !allowedDomains.includes(domain)) {
      throw new OidcRefusal(
        `email domain ${domain} not allowed`,
        `Accounts from ${domain} cannot sign in to this Keyward.`,
        email,
      );
    }
    const role = this.roleFrom(claims[this.settings.roleClaim]);
    if (!role) {
      throw new OidcRefusal(
        'no role maps from the claim',
        'Your account at the single sign-on provider has no Keyward role; ask an owner.',
        email,
      );
    }
    return { subject: `${issuer} ${String(claims.sub)}`, email, emailVerified: claims.email_verified === true, role };
  }

  /** The most privileged role any value of the claim maps to; else the default role. */
  roleFrom(claim: unknown): Role | null {
    const values = (Array.isArray(claim) ? claim : [claim]).filter((v): v is string => typeof v === 'string');
    const mapped = this.settings.roleMap.filter(([value]) => values.includes(value)).map(([, role]) => role);
    // ROLES is ordered from most to least privileged.
    return ROLES.find((r) => mapped.includes(r)) ?? this.settings.defaultRole;
  }

  private seal(flow: Flow): string {
    const body = Buffer.from(JSON.stringify(flow)).toString('base64url');
    return `${body}.${this.mac(body)}`;
  }

  private unseal(raw: string | undefined): Flow | null {
    const dot = raw?.lastIndexOf('.') ?? -1;
    if (!raw || dot <= 0) return null;
    const body = raw.slice(0, dot);
    const mac = Buffer.from(raw.slice(dot + 1));
    const expected = Buffer.from(this.mac(body));
    if (mac.length !== expected.length || !timingSafeEqual(mac, expected)) return null;
    try {
      const flow = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as Flow;
      return flow.exp > Date.now() ? flow : null;
    } catch {
      return null;
    }
  }

  private mac(body: string): string {
    return createHmac('sha256', this.cookieKey).update(body).digest('base64url');
  }
}
