import request from 'supertest';
import { AccessTokensService } from '../../src/access-tokens/access-tokens.service';
import { LimitsService } from '../../src/limits/limits.service';
import { UsageRecorder } from '../../src/usage/usage-recorder';
import { apiToken, ConsoleSession, createUser, startTestApp, type TestApp } from '../support/test-app';

interface Budget {
  id: string;
  unit: string;
  period: string;
  limit: number;
  used: number;
  reserved: number;
  remaining: number;
  percent: number;
  resetAt: string | null;
}
interface TokenBody {
  id: string;
  token: string;
  scopes: string[];
  budgets: Budget[];
}

const fieldsOf = (res: request.Response) =>
  ((res.body as { errors?: { field: string }[] }).errors ?? []).map((e) => e.field).sort();

describe('Access token budgets and scopes: API, console, usage reports', () => {
  let t: TestApp;
  const bearer: Record<string, string> = {};
  const as = (role: string) => ({ Authorization: `Bearer ${bearer[role]}` });

  async function create(body: Record<string, unknown>): Promise<TokenBody> {
    const res = await request(t.http)
      .post('/api/admin/access-tokens')
      .set(as('owner'))
      .send({ name: 'app', ...body });
    if (res.status !== 201) throw new Error(`create answered ${res.status}: ${JSON.stringify(res.body)}`);
    return res.body as TokenBody;
  }

  const settle = async () => {
    await t.app.get(LimitsService).flush(3);
    await t.app.get(LimitsService).flush(3);
  };

  beforeAll(async () => {
    t = await startTestApp();
    bearer.owner = await apiToken(t.http);
    for (const role of ['operator', 'auditor']) {
      const user = await createUser(t.http, bearer.owner, role);
      bearer[role] = await apiToken(t.http, user.email, user.password);
    }
  });
  afterAll(async () => {
    await t.close();
  });

  it('creates a token with scopes and several budgets and shows spend against each', async () => {
    const created = await create({
      scopes: ['files', 'usage:report'],
      budgets: [
        { unit: 'usd', period: 'monthly', limit: 100 },
        { unit: 'requests', period: 'daily', limit: 1000 },
        { unit: 'tokens', period: 'total', limit: 5_000_000 },
      ],
    });
    expect(created.scopes).toEqual(['files', 'usage:report']);
    expect(created.budgets.map((b) => `${b.unit}/${b.period}`)).toEqual([
      'tokens/total',
      'requests/daily',
      'usd/monthly',
    ]);
    const usd = created.budgets.find((b) => b.unit === 'usd')!;
    expect(usd).toMatchObject({ limit: 100, used: 0, reserved: 0, remaining: 100, percent: 0 });
    expect(new Date(usd.resetAt!).getUTCDate()).toBe(1);
    expect(created.budgets.find((b) => b.period === 'total')!.resetAt).toBeNull();

    // The gateway's principal carries the grants.
    const principal = await t.app.get(AccessTokensService).resolve(created.token);
    expect(principal?.scopes.has('files')).toBe(true);
    expect(principal?.scopes.has('batches')).toBe(false);

    // Spend reaches the view: used, remaining, percent.
    expect(t.app.get(LimitsService).applies(null, created.id)).toBe(true);
    t.app
      .get(LimitsService)
      .charge({ keyId: null, accessTokenId: created.id, actual: { tokens: 10, usd: 25, requests: 1 } });
    await settle();
    const one = await request(t.http).get(`/api/admin/access-tokens/${created.id}`).set(as('auditor')).expect(200);
    expect((one.body as TokenBody).budgets.find((b) => b.unit === 'usd')).toMatchObject({
      used: 25,
      remaining: 75,
      percent: 25,
    });
    const list = await request(t.http).get('/api/admin/access-tokens').set(as('owner')).expect(200);
    const listed = (list.body as { tokens: TokenBody[] }).tokens.find((x) => x.id === created.id)!;
    expect(listed.budgets).toHaveLength(3);
  });

  it('refuses unknown scopes, units and periods, and limits that are not positive numbers, field by field', async () => {
    const bad = await request(t.http)
      .post('/api/admin/access-tokens')
      .set(as('owner'))
      .send({
        name: 'bad',
        scopes: ['files', 'admin'],
        budgets: [
          { unit: 'euros', period: 'monthly', limit: 10 },
          { unit: 'usd', period: 'hourly', limit: 10 },
          { unit: 'usd', period: 'monthly', limit: 0 },
          { unit: 'usd', period: 'daily', limit: '5' },
          { unit: 'tokens', period: 'daily', limit: -3 },
        ],
      })
      .expect(400);
    expect(bad.headers['content-type']).toMatch(/application\/problem\+json/);
    expect(fieldsOf(bad)).toEqual([
      'budgets[0].unit',
      'budgets[1].period',
      'budgets[2].limit',
      'budgets[3].limit',
      'budgets[4].limit',
      'scopes',
    ]);
    const twice = await request(t.http)
      .post('/api/admin/access-tokens')
      .set(as('owner'))
      .send({
        name: 'twice',
        budgets: [
          { unit: 'usd', period: 'monthly', limit: 10 },
          { unit: 'usd', period: 'monthly', limit: 20 },
        ],
      })
      .expect(400);
    expect(fieldsOf(twice)).toEqual(['budgets[1]']);
    const noCount = await t.dataSource.query(
      `SELECT count(*)::int AS n FROM access_tokens WHERE name IN ('bad', 'twice')`,
    );
    expect(noCount[0].n).toBe(0);
  });

  it('changes scopes and replaces budgets (keeping the spend of a kept unit and period), audited, for admins only', async () => {
    const created = await create({ budgets: [{ unit: 'usd', period: 'monthly', limit: 10 }] });
    t.app
      .get(LimitsService)
      .charge({ keyId: null, accessTokenId: created.id, actual: { tokens: 1, usd: 4, requests: 1 } });
    await settle();

    const patched = await request(t.http)
      .patch(`/api/admin/access-tokens/${created.id}`)
      .set(as('owner'))
      .send({ scopes: ['batches'] })
      .expect(200);
    expect((patched.body as TokenBody).scopes).toEqual(['batches']);
    expect((await t.app.get(AccessTokensService).resolve(created.token))?.scopes.has('batches')).toBe(true);

    const replaced = await request(t.http)
      .put(`/api/admin/access-tokens/${created.id}/budgets`)
      .set(as('owner'))
      .send({
        budgets: [
          { unit: 'usd', period: 'monthly', limit: 20 },
          { unit: 'requests', period: 'weekly', limit: 50 },
        ],
      })
      .expect(200);
    const budgets = (replaced.body as TokenBody).budgets;
    expect(budgets.find((b) => b.unit === 'usd')).toMatchObject({ limit: 20, used: 4, remaining: 16 });
    expect(budgets.find((b) => b.unit === 'requests')).toMatchObject({ limit: 50, used: 0, period: 'weekly' });

    await request(t.http)
      .put(`/api/admin/access-tokens/${created.id}/budgets`)
      .set(as('owner'))
      .send({ budgets: [{ unit: 'usd', period: 'monthly', limit: 'lots' }] })
      .expect(400);
    await request(t.http)
      .patch(`/api/admin/access-tokens/${created.id}`)
      .set(as('owner'))
      .send({ scopes: ['everything'] })
      .expect(400);
    await request(t.http)
      .patch(`/api/admin/access-tokens/${created.id}`)
      .set(as('operator'))
      .send({ scopes: [] })
      .expect(403);
    await request(t.http)
      .put(`/api/admin/access-tokens/${created.id}/budgets`)
      .set(as('auditor'))
      .send({ budgets: [] })
      .expect(403);

    const cleared = await request(t.http)
      .put(`/api/admin/access-tokens/${created.id}/budgets`)
      .set(as('owner'))
      .send({ budgets: [] })
      .expect(200);
    expect((cleared.body as TokenBody).budgets).toEqual([]);
    expect(t.app.get(LimitsService).applies(null, created.id)).toBe(false);

    const entries = await t.dataSource.query<{ action: string; outcome: string }[]>(
      `SELECT action, outcome FROM audit_log WHERE target_id = $1 ORDER BY seq`,
      [created.id],
    );
    expect(entries.map((e) => `${e.action}:${e.outcome}`)).toEqual([
      'access-token.create:success',
      'access-token.update:success',
      'access-token.budgets:success',
      'access-token.budgets:failure',
      'access-token.update:failure',
      // Roles without the right are refused before the handler, and audited as such.
      'access.denied:denied',
      'access.denied:denied',
      'access-token.budgets:success',
    ]);

    await request(t.http).post(`/api/admin/access-tokens/${created.id}/revoke`).set(as('owner')).expect(200);
    await request(t.http)
      .patch(`/api/admin/access-tokens/${created.id}`)
      .set(as('owner'))
      .send({ scopes: [] })
      .expect(409);
  });

  it('edits grants and budgets in the console, with and without htmx, with inline errors', async () => {
    const created = await create({ budgets: [{ unit: 'usd', period: 'monthly', limit: 50 }] });
    t.app
      .get(LimitsService)
      .charge({ keyId: null, accessTokenId: created.id, actual: { tokens: 1, usd: 10, requests: 1 } });
    await settle();
    const session = new ConsoleSession(t.http);
    await session.signIn();

    const page = await session.page(`/admin/access-tokens/${created.id}`);
    expect(page.headers.vary).toMatch(/HX-Request/);
    expect(page.text).toContain('<meter min="0" max="50"');
    expect(page.text).toContain('$10 of $50 monthly');
    expect(page.text).toContain('name="limit_0" value="50"');
    expect(page.text).toContain('name="scopes" value="usage:report"');
    const list = await session.page('/admin/access-tokens');
    expect(list.text).toContain(`href="/admin/access-tokens/${created.id}"`);
    // The list shows spend against budget too.
    expect(list.text).toContain('$10 of $50 monthly');

    // Without JavaScript: a real form post, a redirect, the page with the new state.
    const saved = await session.post(`/admin/access-tokens/${created.id}/budgets`, {
      rows: '2',
      limit_0: '60',
      unit_0: 'usd',
      period_0: 'monthly',
      limit_1: '500',
      unit_1: 'requests',
      period_1: 'daily',
    });
    expect(saved.status).toBe(303);
    expect(saved.headers.location).toBe(`/admin/access-tokens/${created.id}`);
    const after = await session.page(`/admin/access-tokens/${created.id}`);
    expect(after.text).toContain('Budgets saved (2).');
    expect(after.text).toContain('$10 of $60 monthly');
    expect(after.text).toContain('0 requests of 500 requests daily');

    // "Add a budget row" adds an empty row and saves nothing.
    const added = await session.htmx('post', `/admin/access-tokens/${created.id}/budgets`, {
      rows: '1',
      limit_0: '60',
      unit_0: 'usd',
      period_0: 'monthly',
      add: 'yes',
    });
    expect(added.status).toBe(200);
    expect(added.text).not.toContain('<html');
    expect(added.text).toContain('name="limit_1" value=""');

    // htmx: the section alone, with the error beside its row, and nothing changed.
    const invalid = await session.htmx('post', `/admin/access-tokens/${created.id}/budgets`, {
      rows: '2',
      limit_0: 'abc',
      unit_0: 'usd',
      period_0: 'monthly',
      limit_1: '0',
      unit_1: 'tokens',
      period_1: 'weekly',
    });
    expect(invalid.status).toBe(400);
    expect(invalid.headers.vary).toMatch(/HX-Request/);
    expect(invalid.text).toMatch(/^<section class="card" id="token-budgets">/);
    expect(invalid.text).toContain('aria-describedby="budget-error-0"');
    expect(invalid.text).toContain('aria-describedby="budget-error-1"');
    expect(invalid.text).toMatch(/limit must be a number/);
    const stillTwo = await request(t.http).get(`/api/admin/access-tokens/${created.id}`).set(as('owner')).expect(200);
    expect((stillTwo.body as TokenBody).budgets).toHaveLength(2);

    // Without htmx, an invalid form is the whole page with the inline error, status 400.
    const invalidPage = await session.post(`/admin/access-tokens/${created.id}/budgets`, {
      rows: '1',
      limit_0: '10',
      unit_0: 'usd',
      period_0: 'yearly',
    });
    expect(invalidPage.status).toBe(400);
    expect(invalidPage.text).toContain('<html');
    expect(invalidPage.text).toMatch(/period must be one of daily, weekly, monthly, total/);

    // Removing a row.
    const removed = await session.htmx('post', `/admin/access-tokens/${created.id}/budgets`, {
      rows: '2',
      limit_0: '60',
      unit_0: 'usd',
      period_0: 'monthly',
      limit_1: '500',
      unit_1: 'requests',
      period_1: 'daily',
      remove_1: 'yes',
    });
    expect(removed.status).toBe(200);
    expect(removed.text).toContain('Budgets saved (1).');

    // Grants: htmx and plain.
    const granted = await session.htmx('post', `/admin/access-tokens/${created.id}/scopes`, {
      scopes: 'usage:report',
    });
    expect(granted.status).toBe(200);
    expect(granted.text).toMatch(/^<section class="card" id="token-scopes">/);
    expect(granted.text).toContain('Grants saved: usage:report.');
    const plain = await session.post(`/admin/access-tokens/${created.id}/scopes`, { scopes: 'nonsense' });
    expect(plain.status).toBe(400);
    expect(plain.text).toMatch(/each scopes entry must be one of/);
    const final = await request(t.http).get(`/api/admin/access-tokens/${created.id}`).set(as('owner')).expect(200);
    expect((final.body as TokenBody).scopes).toEqual(['usage:report']);

    // The create form takes grants too.
    await session.page('/admin/access-tokens');
    const made = await session.post('/admin/access-tokens', { name: 'from the form', scopes: 'files' });
    expect(made.status).toBe(201);
    const [row] = await t.dataSource.query(`SELECT scopes FROM access_tokens WHERE name = 'from the form'`);
    expect(row.scopes).toEqual(['files']);
  });

  it('takes usage reports only with the usage:report scope, inside the token, capped, counted against budgets', async () => {
    const withScope = await create({
      scopes: ['usage:report'],
      providers: ['openai'],
      models: ['gpt-4o-mini'],
      budgets: [{ unit: 'tokens', period: 'monthly', limit: 100_000 }],
    });
    const noScope = await create({});
    const report = (token: string, body: Record<string, unknown>) =>
      request(t.http)
        .post('/api/usage')
        .set('Authorization', `Bearer ${token}`)
        .send({ provider: 'openai', endpoint: '/v1/chat/completions', success: true, model: 'gpt-4o-mini', ...body });

    const refused = await report(noScope.token, { inputTokens: 10, outputTokens: 5 }).expect(403);
    expect(refused.headers['content-type']).toMatch(/application\/problem\+json/);
    expect(refused.body).toMatchObject({ status: 403, detail: expect.stringMatching(/usage:report/) });

    await report(withScope.token, { model: 'gpt-4o', inputTokens: 10, outputTokens: 5 }).expect(403);
    await report(withScope.token, { model: undefined, inputTokens: 10, outputTokens: 5 }).expect(403);
    await report(withScope.token, { provider: 'anthropic', inputTokens: 10, outputTokens: 5 }).expect(403);
    const tooMany = await report(withScope.token, { inputTokens: 9_000_000, outputTokens: 2_000_000 }).expect(400);
    expect(fieldsOf(tooMany)).toEqual(['inputTokens']);
    const tooDear = await report(withScope.token, { inputTokens: 10, outputTokens: 5, cost: 5000 }).expect(400);
    expect(fieldsOf(tooDear)).toEqual(['cost']);

    const ok = await report(withScope.token, { inputTokens: 30_000, outputTokens: 10_000 }).expect(202);
    expect(ok.body).toMatchObject({ accepted: true, provider: 'openai', keyId: null, totalTokens: 40_000 });
    await settle();
    await t.app.get(UsageRecorder).flush();
    const view = await request(t.http).get(`/api/admin/access-tokens/${withScope.id}`).set(as('owner')).expect(200);
    expect((view.body as TokenBody).budgets[0]).toMatchObject({ used: 40_000, remaining: 60_000 });
    const [event] = await t.dataSource.query(
      `SELECT source, total_tokens FROM usage_events WHERE access_token_id = $1`,
      [withScope.id],
    );
    expect(event).toEqual({ source: 'reported', total_tokens: 40_000 });
  });
});
