import { loadConfig } from '../../config/config';
import { OidcClient, OidcRefusal } from './oidc.client';

const env = {
  KEYWARD_OIDC_ISSUER: 'https://login.example.com/realms/acme',
  KEYWARD_OIDC_CLIENT_ID: 'keyward',
  KEYWARD_OIDC_ROLE_MAP: 'keyward-admins=admin, keyward-ops=operator,keyward-owners=owner',
  KEYWARD_OIDC_ALLOWED_DOMAINS: 'Acme.example, corp.acme.example',
};
const clientFor = (extra: Record<string, string> = {}) =>
  new OidcClient(loadConfig({ ...env, ...extra }).oidc!, 'https://keyward.example', Buffer.alloc(32), true);
const ISSUER = 'https://login.example.com/realms/acme';

describe('OidcClient: who a sign-in is and which role it gets', () => {
  it('maps the most privileged matching claim value, whatever the order', () => {
    const client = clientFor();
    expect(client.roleFrom(['keyward-ops', 'keyward-admins'])).toBe('admin');
    expect(client.roleFrom('keyward-ops')).toBe('operator');
    expect(client.roleFrom(['keyward-owners', 'keyward-ops'])).toBe('owner');
  });

  it('gives the least-privileged default (auditor) when nothing maps, or refuses with "none"', () => {
    expect(clientFor().roleFrom(['staff'])).toBe('auditor');
    expect(clientFor().roleFrom(undefined)).toBe('auditor');
    expect(clientFor({ KEYWARD_OIDC_DEFAULT_ROLE: 'none' }).roleFrom(['staff'])).toBeNull();
    expect(() =>
      clientFor({ KEYWARD_OIDC_DEFAULT_ROLE: 'none' }).identityFrom({ sub: '1', email: 'a@acme.example' }, ISSUER),
    ).toThrow(OidcRefusal);
  });

  it('takes the email lower-cased and keys the account on issuer and subject', () => {
    const identity = clientFor().identityFrom(
      { sub: 'u-1', email: 'Ada@ACME.example', email_verified: true, groups: ['keyward-ops'] },
      ISSUER,
    );
    expect(identity).toEqual({
      subject: `${ISSUER} u-1`,
      email: 'ada@acme.example',
      emailVerified: true,
      role: 'operator',
    });
  });

  it('refuses other domains, unverified emails and a missing email', () => {
    const client = clientFor();
    const refusal = (claims: Record<string, unknown>) => {
      try {
        client.identityFrom({ sub: 'x', ...claims }, ISSUER);
      } catch (error) {
        return (error as OidcRefusal).reason;
      }
      return 'accepted';
    };
    expect(refusal({ email: 'mallory@evil.example' })).toBe('email domain evil.example not allowed');
    // A look-alike suffix is not the domain.
    expect(refusal({ email: 'mallory@notacme.example' })).toBe('email domain notacme.example not allowed');
    expect(refusal({ email: 'ada@corp.acme.example' })).toBe('accepted');
    expect(refusal({ email: 'ada@acme.example', email_verified: false })).toBe('email not verified');
    expect(refusal({})).toBe('no email claim');
  });
});

describe('single sign-on configuration', () => {
  it('is off unless issuer and client id are set, and needs both', () => {
    expect(loadConfig({}).oidc).toBeUndefined();
    expect(() => loadConfig({ KEYWARD_OIDC_ISSUER: ISSUER })).toThrow(/KEYWARD_OIDC_CLIENT_ID must be set together/);
  });

  it('names each bad variable', () => {
    expect(() => loadConfig({ ...env, KEYWARD_OIDC_ROLE_MAP: 'keyward-admins=root' })).toThrow(
      /KEYWARD_OIDC_ROLE_MAP must be a comma-separated list of claim-value=role pairs/,
    );
    expect(() => loadConfig({ ...env, KEYWARD_OIDC_DEFAULT_ROLE: 'superuser' })).toThrow(/KEYWARD_OIDC_DEFAULT_ROLE/);
    expect(() => loadConfig({ ...env, KEYWARD_OIDC_ALLOWED_DOMAINS: 'not a domain' })).toThrow(
      /KEYWARD_OIDC_ALLOWED_DOMAINS/,
    );
    expect(() => loadConfig({ ...env, KEYWARD_OIDC_ISSUER: 'login.example.com' })).toThrow(/KEYWARD_OIDC_ISSUER/);
    expect(() => loadConfig({ KEYWARD_MFA_STEP_UP_MINUTES: '0' })).toThrow(/KEYWARD_MFA_STEP_UP_MINUTES/);
  });

  it('defaults: groups claim, auditor, any domain, 10-minute step-up', () => {
    const config = loadConfig({ KEYWARD_OIDC_ISSUER: ISSUER, KEYWARD_OIDC_CLIENT_ID: 'k' });
    expect(config.oidc).toMatchObject({ roleClaim: 'groups', defaultRole: 'auditor', allowedDomains: [], roleMap: [] });
    expect(config.mfa.stepUpMinutes).toBe(10);
  });
});
