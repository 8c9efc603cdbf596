import * as path from 'node:path';
import request from 'supertest';
import { maskSecret } from '../../src/keys/key-hint';
import { startFakeProvider, type OpenAiFakeProvider, type OpenRouterFakeProvider } from '../fake-providers';
import { apiToken, ConsoleSession, createUser, startTestApp, type TestApp } from '../support/test-app';

const fixtures = path.resolve(__dirname, '../fixtures/plugins');
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

type Res = request.Response;

describe('Keys console: list, add, verify, limits, rotate, revoke', () => {
  let t: TestApp;
  let openai: OpenAiFakeProvider;
  let openrouter: OpenRouterFakeProvider;
  let token: string;
  let owner: ConsoleSession;
  /** Every secret handed to the app; none may ever come back in a page. */
  const secrets: string[] = [];
  /** Every console answer of this file, checked against `secrets` at the end. */
  const answers: Res[] = [];

  const secret = (value: string) => {
    secrets.push(value);
    return value;
  };
  const seen = async (pending: PromiseLike<Res>): Promise<Res> => {
    const res = await pending;
    answers.push(res);
    return res;
  };
  const page = (s: ConsoleSession, url: string, status = 200) => seen(s.page(url, status));
  const post = (s: ConsoleSession, url: string, form: Record<string, string> = {}) => seen(s.post(url, form));
  const hx = (s: ConsoleSession, method: 'get' | 'post', url: string, form: Record<string, string> = {}) =>
    seen(s.htmx(method, url, form));

  /** Adds a key through the JSON API (the console's own form has its own tests). */
  async function addKey(body: Record<string, unknown>): Promise<{ id: string; key: string }> {
    const res = await request(t.http).post('/api/admin/api-keys').set('Authorization', `Bearer ${token}`).send(body);
    if (res.status !== 201) throw new Error(`create answered ${res.status}: ${JSON.stringify(res.body)}`);
    return res.body as { id: string; key: string };
  }

  /**
   * Audit rows matching `sql`. A console handler answers before the audit interceptor has written
   * its entry, so this waits (briefly) until `count` rows are there.
   */
  async function audited<T = Record<string, unknown>>(sql: string, params: unknown[], count: number): Promise<T[]> {
    let rows: T[] = [];
    for (let i = 0; i < 40; i++) {
      rows = await t.dataSource.query<T[]>(sql, params);
      if (rows.length >= count) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return rows;
  }

  const rowOf = (html: string, id: string) => {
    const start = html.indexOf(`<tr id="key-${id}">`);
    return start < 0 ? undefined : html.slice(start, html.indexOf('</tr>', start) + 5);
  };

  beforeAll(async () => {
    openai = await startFakeProvider('openai');
    openrouter = await startFakeProvider('openrouter');
    process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
    process.env.KEYWARD_PROVIDER_OPENROUTER_BASE_URL = openrouter.baseUrl;
    process.env.KEYWARD_PROVIDER_ORG_LLM_BASE_URL = openai.baseUrl;
    t = await startTestApp({ KEYWARD_PLUGINS: path.join(fixtures, 'org-llm') });
    token = await apiToken(t.http);
    owner = new ConsoleSession(t.http);
    await owner.signIn();
  });
  afterAll(async () => {
    await t.close();
    await openai.close();
    await openrouter.close();
    delete process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL;
    delete process.env.KEYWARD_PROVIDER_OPENROUTER_BASE_URL;
    delete process.env.KEYWARD_PROVIDER_ORG_LLM_BASE_URL;
  });

  describe('KeyList', () => {
    const ids: Record<string, string> = {};
    const hints: Record<string, string> = {};

    beforeAll(async () => {
      const prod = secret(openai.generateKey());
      const staging = secret(openai.generateKey());
      const router = secret(openrouter.generateKey());
      ids.prod = (
        await addKey({
          provider: 'openai',
          name: 'List Prod OpenAI',
          key: prod,
          limit: { value: 10000, unit: 'tokens', period: 'monthly' },
        })
      ).id;
      ids.staging = (
        await addKey({
          provider: 'openai',
          name: 'List Staging OpenAI',
          key: staging,
          expiresAt: new Date(Date.now() + 3 * 86_400_000).toISOString(),
        })
      ).id;
      ids.router = (await addKey({ provider: 'openrouter', name: 'List Router', key: router })).id;
      await t.dataSource.query(`UPDATE api_keys SET usage_current = 1200 WHERE id = $1`, [ids.prod]);
      hints.prod = maskSecret(prod);
      hints.staging = maskSecret(staging);
      hints.router = maskSecret(router);
    });

    it('renders each key with its masked hint, status, usage against the limit and its actions', async () => {
      const res = await page(owner, '/admin/keys?q=List');
      expect(res.text).toMatch(/^<!doctype html>/i);
      expect(res.headers.vary).toMatch(/HX-Request/);
      expect(res.text).toContain('<a href="/admin/keys" aria-current="page">Keys</a>');
      for (const hint of Object.values(hints)) expect(res.text).toContain(`<code>${hint}</code>`);
      const prod = rowOf(res.text, ids.prod)!;
      expect(prod).toContain('OpenAI');
      expect(prod).toContain('1,200 / 10,000 tokens monthly');
      expect(prod).toContain('status-ok">active');
      expect(prod).toContain('not verified');
      expect(prod).toContain('never');
      expect(prod).toContain(`hx-post="/admin/keys/${ids.prod}/verify" hx-target="closest tr" hx-swap="outerHTML"`);
      expect(prod).toMatch(/hx-post="\/admin\/keys\/[^"]+\/revoke"[^>]*hx-confirm="Revoke the key/);
      expect(prod).toContain(`href="/admin/keys/${ids.prod}"`);
      expect(rowOf(res.text, ids.staging)).toContain('expiring soon');
      expect(rowOf(res.text, ids.router)).toContain('no limit');
      expect(res.text).toContain('href="/admin/keys/new"');
    });

    it('filters by provider, status, name and expiry, sorts and pages; htmx gets only the table', async () => {
      const byProvider = await hx(owner, 'get', '/admin/keys?provider=openrouter&q=List');
      expect(byProvider.status).toBe(200);
      expect(byProvider.headers.vary).toMatch(/HX-Request/);
      expect(byProvider.text).not.toMatch(/<html|aria-label="Main"|class="filters"/i);
      expect(byProvider.text).toMatch(/^\s*<table class="keys">/);
      expect(byProvider.text).toContain('List Router');
      expect(byProvider.text).not.toContain('List Prod OpenAI');

      const byName = await page(owner, '/admin/keys?q=staging');
      expect(byName.text).toContain('List Staging OpenAI');
      expect(byName.text).not.toContain('List Prod OpenAI');
      expect(byName.text).toContain('value="staging"');

      const expiring = await hx(owner, 'get', '/admin/keys?expiring=7&q=List');
      expect(expiring.text).toContain('List Staging OpenAI');
      expect(expiring.text).not.toContain('List Router');

      const revoked = await hx(owner, 'get', '/admin/keys?active=false&q=List');
      expect(revoked.text).toContain('No keys match.');

      const sorted = await hx(owner, 'get', '/admin/keys?q=List&sort=name');
      const order = ['List Prod OpenAI', 'List Router', 'List Staging OpenAI'].map((n) => sorted.text.indexOf(n));
      expect(order).toEqual([...order].sort((a, b) => a - b));
      const descending = await hx(owner, 'get', '/admin/keys?q=List&sort=-name');
      expect(descending.text.indexOf('List Staging OpenAI')).toBeLessThan(descending.text.indexOf('List Prod OpenAI'));

      const first = await hx(owner, 'get', '/admin/keys?q=List&sort=name&pageSize=1');
      expect(first.text).toContain('1–1 of 3');
      expect(first.text).toContain('List Prod OpenAI');
      const decoded = first.text.replace(/&#x3D;/g, '=').replace(/&amp;/g, '&');
      expect(decoded).toContain('href="/admin/keys?q=List&sort=name&pageSize=1&page=2"');
      const second = await hx(owner, 'get', '/admin/keys?q=List&sort=name&pageSize=1&page=2');
      expect(second.text).toContain('List Router');
      expect(second.text).not.toContain('List Prod OpenAI');

      // Empty filter fields are "any"; a wrong one is said beside the table, not as a crash.
      await hx(owner, 'get', '/admin/keys?provider=&active=&q=&expiring=&sort=-createdAt').then((r) =>
        expect(r.status).toBe(200),
      );
      const bad = await hx(owner, 'get', '/admin/keys?expiring=soon');
      expect(bad.status).toBe(400);
      expect(bad.text).toContain('field-error');
      expect(bad.text).toContain('expiring must be a whole number of days');
    });
  });

  describe('KeyForm', () => {
    it('shows the provider-aware form: every field without JavaScript, the chosen provider’s with htmx', async () => {
      const res = await page(owner, '/admin/keys/new');
      expect(res.text).toMatch(/<form method="post" action="\/admin\/keys"/);
      expect(res.text).toMatch(/<input type="password" name="key" autocomplete="off"/);
      expect(res.text).toContain('name="_csrf"');
      expect(res.text).toContain('required for Org LLM');
      expect(res.text).toContain('name="managementKey"');
      expect(res.text).toContain('type="datetime-local" name="expiresAt"');
      expect(res.text).toContain('hx-get="/admin/keys/new" hx-trigger="change" hx-target="#key-provider-fields"');

      const org = await hx(owner, 'get', '/admin/keys/new?provider=org-llm&organizationId=org-7');
      expect(org.text).toMatch(/^[\s\S]*<div id="key-provider-fields"/);
      expect(org.text).not.toMatch(/<html|<form/i);
      expect(org.text).toContain('(required by Org LLM)');
      expect(org.text).toContain('value="org-7" maxlength="200" required');
      expect(org.text).not.toContain('name="managementKey"');
      const router = await hx(owner, 'get', '/admin/keys/new?provider=openrouter');
      expect(router.text).toContain('name="managementKey"');
      expect(router.text).toContain('mint replacement keys with OpenRouter');
      const groq = await hx(owner, 'get', '/admin/keys/new?provider=groq');
      expect(groq.text).not.toContain('name="managementKey"');
    });

    it('shows each error beside its field with 400, with and without htmx, and never sends the key back', async () => {
      const wrong = secret('gsk_this-is-a-groq-key-not-an-openai-one-123456');
      const plain = await post(owner, '/admin/keys', { provider: 'openai', name: 'Wrong format', key: wrong });
      expect(plain.status).toBe(400);
      expect(plain.text).toMatch(/^<!doctype html>/i);
      expect(plain.text).toMatch(/<p class="field-error" id="new-key-error">expected an OpenAI key: [^<]*sk-proj-/);
      expect(plain.text).toContain('enter the key again');
      expect(plain.text).toContain('value="Wrong format"');
      expect(plain.text).toMatch(/<option value="openai" selected>/);
      expect(plain.text).not.toContain(wrong);

      const partial = await hx(owner, 'post', '/admin/keys', { provider: 'openai', name: 'Wrong format', key: wrong });
      expect(partial.status).toBe(400);
      expect(partial.text).toMatch(/^<form method="post" action="\/admin\/keys"/);
      expect(partial.text).toContain('id="new-key-error"');
      expect(partial.text).not.toContain(wrong);

      const orgKey = secret(`sk-${'d'.repeat(30)}`);
      const noOrg = await hx(owner, 'post', '/admin/keys', { provider: 'org-llm', name: 'No org', key: orgKey });
      expect(noOrg.status).toBe(400);
      expect(noOrg.text).toMatch(/id="new-organizationId-error">Org LLM keys need an organization id/);
      expect(noOrg.text).toContain('For safety the key is not shown again: enter the key again.');
      expect(noOrg.text).not.toContain(orgKey);

      const valid = secret(openai.generateKey());
      const management = secret(openrouter.generateKey());
      const dated = await post(owner, '/admin/keys', {
        provider: 'openai',
        name: 'Past and bad cron',
        key: valid,
        managementKey: management,
        expiresAt: '2020-01-01T00:00',
        rotationSchedule: 'every monday',
      });
      expect(dated.status).toBe(400);
      expect(dated.text).toMatch(/id="new-expiresAt-error">Expires must be in the future/);
      expect(dated.text).toMatch(/id="new-rotationSchedule-error">Rotation schedule must be a cron expression/);
      expect(dated.text).toContain('value="2020-01-01T00:00"');
      expect(dated.text).toContain('value="every monday"');
      expect(dated.text).not.toContain(valid);
      expect(dated.text).not.toContain(management);

      const shape = await hx(owner, 'post', '/admin/keys', {
        provider: 'openai',
        name: 'Bad numbers',
        key: valid,
        priority: '5000',
        limitValue: '-5',
        limitUnit: 'tokens',
        limitPeriod: 'monthly',
      });
      expect(shape.status).toBe(400);
      expect(shape.text).toMatch(/id="new-priority-error">Priority must be a whole number from 0 to 1000/);
      expect(shape.text).toMatch(/id="new-limit-error">Limit must be greater than 0/);
      expect(shape.text).not.toContain(valid);

      const rows = await t.dataSource.query(`SELECT 1 FROM api_keys WHERE name IN ('Wrong format', 'No org')`);
      expect(rows).toHaveLength(0);
      const audit = await audited<{ outcome: string; details: unknown }>(
        `SELECT outcome, details FROM audit_log WHERE action = 'api-key.create' AND outcome = 'failure'`,
        [],
        5,
      );
      expect(audit.length).toBeGreaterThanOrEqual(4);
      for (const s of [wrong, orgKey, valid, management]) expect(JSON.stringify(audit)).not.toContain(s);
    });

    it('adds a key: a redirect to its page with a message, or HX-Redirect for htmx', async () => {
      const key = secret(openai.generateKey());
      const res = await post(owner, '/admin/keys', {
        provider: 'openai',
        name: 'Form OpenAI',
        key,
        organizationId: 'org-form',
        expiresAt: '2030-01-31T12:00',
        rotationSchedule: '0 3 * * 1',
        priority: '20',
        weight: '2',
        limitValue: '50',
        limitUnit: 'usd',
        limitPeriod: 'weekly',
      });
      expect(res.status).toBe(303);
      expect(res.headers.location).toMatch(new RegExp(`^/admin/keys/${UUID.source}$`));
      const id = res.headers.location.split('/').pop()!;
      const shown = await page(owner, res.headers.location);
      expect(shown.text).toContain(`Added Form OpenAI (${maskSecret(key)}).`);
      expect(shown.text).toContain(`<code>${maskSecret(key)}</code>`);
      expect(shown.text).toContain('2030-01-31 12:00:00 UTC');
      expect(shown.text).toContain('0 / 50 USD weekly');
      expect(shown.text).toContain('priority 20, weight 2');
      expect(shown.text).toContain('At 03:00, only on Monday (UTC)');
      expect(shown.text).toContain('value="2030-01-31T12:00"');
      expect(shown.text).not.toContain(key);
      const audit = await audited(
        `SELECT target_id FROM audit_log WHERE action = 'api-key.create' AND outcome = 'success' AND target_id = $1`,
        [id],
        1,
      );
      expect(audit).toHaveLength(1);

      const viaHtmx = await hx(owner, 'post', '/admin/keys', {
        provider: 'openai',
        name: 'Form OpenAI htmx',
        key: secret(openai.generateKey()),
      });
      expect(viaHtmx.status).toBe(204);
      expect(viaHtmx.headers['hx-redirect']).toMatch(new RegExp(`^/admin/keys/${UUID.source}$`));
    });
  });

  describe('KeyEditor', () => {
    let id: string;
    let key: string;

    beforeAll(async () => {
      key = secret(openai.generateKey());
      id = (await addKey({ provider: 'openai', name: 'Editor OpenAI', key })).id;
    });

    it('shows the details, settings, validation, limits, rotation and revoke sections', async () => {
      const res = await page(owner, `/admin/keys/${id}`);
      for (const section of [
        'key-summary',
        'key-validation',
        'key-editor',
        'key-limits',
        'key-rotation',
        'key-danger',
      ]) {
        expect(res.text).toContain(`id="${section}"`);
      }
      expect(res.text).toContain('Not verified yet.');
      expect(res.text).toContain('Never rotated.');
      expect(res.text).toContain(`<code>${maskSecret(key)}</code>`);
      for (const form of ['', '/verify', '/limits', '/rotate']) {
        expect(res.text).toContain(`<form method="post" action="/admin/keys/${id}${form}"`);
      }
      const forms = res.text.match(/<form method="post"[\s\S]*?<\/form>/g)!;
      for (const form of forms) expect(form).toContain('name="_csrf"');
      expect(res.text).not.toContain(key);
    });

    it('saves changed settings only, and shows errors beside the fields', async () => {
      const bad = await hx(owner, 'post', `/admin/keys/${id}`, {
        name: 'Editor OpenAI',
        rotationSchedule: '61 * * * *',
        expiresAt: '2021-05-05T05:05',
      });
      expect(bad.status).toBe(400);
      expect(bad.text).toMatch(/^<section class="card" id="key-editor">/);
      expect(bad.text).toMatch(/id="edit-rotationSchedule-error">Rotation schedule is not a valid cron expression/);
      expect(bad.text).toMatch(/id="edit-expiresAt-error">Expires must be in the future/);
      expect(bad.text).toContain('value="61 * * * *"');

      const plainBad = await post(owner, `/admin/keys/${id}`, { name: '' });
      expect(plainBad.status).toBe(400);
      expect(plainBad.text).toMatch(/^<!doctype html>/i);
      expect(plainBad.text).toMatch(/id="edit-name-error">Name is required/);

      const ok = await hx(owner, 'post', `/admin/keys/${id}`, {
        name: 'Editor OpenAI renamed',
        organizationId: 'org-edit',
        rotationSchedule: '0 4 * * *',
        priority: '7',
      });
      expect(ok.status).toBe(200);
      expect(ok.text).toContain('Saved.');
      expect(ok.text).toContain('id="key-summary" hx-swap-oob="true"');
      expect(ok.text).toContain('id="key-rotation" hx-swap-oob="true"');
      expect(ok.text).toContain('Editor OpenAI renamed');
      expect(ok.text).toContain('At 04:00 (UTC)');
      const [row] = await t.dataSource.query<{ name: string; organization_id: string; priority: number }[]>(
        `SELECT name, organization_id, priority FROM api_keys WHERE id = $1`,
        [id],
      );
      expect(row).toEqual({ name: 'Editor OpenAI renamed', organization_id: 'org-edit', priority: 7 });

      const same = await post(owner, `/admin/keys/${id}`, {
        name: 'Editor OpenAI renamed',
        organizationId: 'org-edit',
      });
      expect(same.status).toBe(303);
      expect((await page(owner, `/admin/keys/${id}`)).text).toContain('Nothing changed.');

      const cleared = await post(owner, `/admin/keys/${id}`, { organizationId: '', rotationSchedule: '' });
      expect(cleared.status).toBe(303);
      const after = await page(owner, `/admin/keys/${id}`);
      expect(after.text).toContain('Saved Editor OpenAI renamed.');
      expect(after.text).toContain('No schedule');
    });

    it('sets a limit and removes it again', async () => {
      const set = await hx(owner, 'post', `/admin/keys/${id}/limits`, {
        value: '5000',
        unit: 'requests',
        period: 'daily',
      });
      expect(set.status).toBe(200);
      expect(set.text).toMatch(/^<section class="card" id="key-limits">/);
      expect(set.text).toContain('Limit set: 0 / 5,000 requests daily.');
      expect(set.text).toContain('id="key-summary" hx-swap-oob="true"');
      expect(set.text).toContain('name="remove" value="yes"');

      const empty = await hx(owner, 'post', `/admin/keys/${id}/limits`, { value: '', unit: 'tokens', period: 'daily' });
      expect(empty.status).toBe(400);
      expect(empty.text).toContain('<p class="field-error" id="limit-error">enter a limit greater than 0');
      const wrong = await post(owner, `/admin/keys/${id}/limits`, { value: '10', unit: 'apples', period: 'daily' });
      expect(wrong.status).toBe(400);
      expect(wrong.text).toMatch(/^<!doctype html>/i);
      expect(wrong.text).toContain('Unit must be one of tokens, requests, usd');

      await t.dataSource.query(`UPDATE api_keys SET usage_current = 5000 WHERE id = $1`, [id]);
      const list = await page(owner, '/admin/keys?q=Editor');
      expect(rowOf(list.text, id)).toContain('over limit');
      expect(rowOf(list.text, id)).toContain('5,000 / 5,000 requests daily');

      const removed = await post(owner, `/admin/keys/${id}/limits`, { remove: 'yes', value: '5000' });
      expect(removed.status).toBe(303);
      const after = await page(owner, `/admin/keys/${id}`);
      expect(after.text).toContain('Limit removed.');
      expect(after.text).toMatch(/<dt>Usage<\/dt><dd>no limit<\/dd>/);
      const audit = await audited<{ outcome: string }>(
        `SELECT outcome FROM audit_log WHERE action = 'api-key.limits' AND target_id = $1 ORDER BY seq`,
        [id],
        4,
      );
      expect(audit.map((a) => a.outcome)).toEqual(['success', 'failure', 'failure', 'success']);
    });
  });

  describe('ValidationStatus', () => {
    it('verifies with the provider: the row, then the status section, show its answer', async () => {
      const key = secret(openai.generateKey());
      const { id } = await addKey({ provider: 'openai', name: 'Verify OpenAI', key });

      const row = await hx(owner, 'post', `/admin/keys/${id}/verify`, { from: 'list' });
      expect(row.status).toBe(200);
      expect(row.text).toMatch(new RegExp(`^<tr id="key-${id}">`));
      expect(row.text).toContain('status-ok">valid</span>');
      expect(openai.requests.at(-1)).toMatchObject({ key });

      openai.setKey(key, { kind: 'revoked' });
      const status = await hx(owner, 'post', `/admin/keys/${id}/verify`, { from: 'page' });
      expect(status.status).toBe(200);
      expect(status.text).toMatch(/^<section class="card" id="key-validation">/);
      expect(status.text).toContain('status-bad">invalid</span>');
      expect(status.text).toContain('<span class="badge">invalid_key</span>');
      expect(status.text).toMatch(/<dt>Reason<\/dt><dd>[^<]+<\/dd>/);
      expect(status.text).toContain('checked ');

      const plain = await post(owner, `/admin/keys/${id}/verify`, { from: 'list' });
      expect(plain.status).toBe(303);
      expect(plain.headers.location).toBe('/admin/keys');
      const list = await page(owner, '/admin/keys?q=Verify');
      expect(list.text).toContain(`Verify OpenAI (${maskSecret(key)}): invalid`);
      expect(rowOf(list.text, id)).toContain('status-bad">invalid</span>');
      const audit = await audited(
        `SELECT 1 FROM audit_log WHERE action = 'api-key.verify' AND outcome = 'success' AND target_id = $1`,
        [id],
        3,
      );
      expect(audit).toHaveLength(3);
    });
  });

  describe('KeyRotation', () => {
    it('rotates with a new key: the history shows old → new, masked', async () => {
      const old = secret(openai.generateKey());
      const { id } = await addKey({
        provider: 'openai',
        name: 'Rotate OpenAI',
        key: old,
        rotationSchedule: '0 3 1 * *',
      });
      const shown = await page(owner, `/admin/keys/${id}`);
      expect(shown.text).toContain('<code>0 3 1 * *</code>');
      expect(shown.text).toContain('At 03:00, on day 1 of the month (UTC)');
      expect(shown.text).toContain('Next rotation: <strong>');
      expect(shown.text).not.toContain('value="mint"');

      const missing = await hx(owner, 'post', `/admin/keys/${id}/rotate`, { mode: 'key', key: '' });
      expect(missing.status).toBe(400);
      expect(missing.text).toContain('id="rotate-key-error">enter the new key you created at the provider');

      const fresh = secret(openai.generateKey());
      const res = await hx(owner, 'post', `/admin/keys/${id}/rotate`, {
        mode: 'key',
        key: fresh,
        gracePeriodSeconds: '0',
      });
      expect(res.status).toBe(200);
      expect(res.text).toMatch(/^<section class="card" id="key-rotation">/);
      expect(res.text).toContain(`Rotated: <code>${maskSecret(old)}</code> → <code>${maskSecret(fresh)}</code>`);
      const history = res.text.slice(res.text.indexOf('<table class="rotations">'));
      expect(history).toContain(`<code>${maskSecret(old)}</code> → <code>${maskSecret(fresh)}</code>`);
      expect(history).toContain('<td>manual</td>');
      expect(history).toContain('<td>admin</td>');
      expect(res.text).toContain('id="key-summary" hx-swap-oob="true"');
      expect(res.text).toContain('id="key-validation" hx-swap-oob="true"');
      expect(res.text).not.toContain(old);
      expect(res.text).not.toContain(fresh);

      // The key that was rotated out cannot come back.
      const back = await hx(owner, 'post', `/admin/keys/${id}/rotate`, { mode: 'key', key: old });
      expect(back.status).toBe(400);
      expect(back.text).toContain('id="rotate-key-error">this key was rotated out');
      expect(back.text).not.toContain(old);

      // OpenAI could mint keys, but this key holds no management key: said inline with 422.
      const mint = await hx(owner, 'post', `/admin/keys/${id}/rotate`, { mode: 'mint' });
      expect(mint.status).toBe(422);
      expect(mint.text).toMatch(/^<section class="card" id="key-rotation">/);
      expect(mint.text).toContain('The new key must come from an admin');
      const plainMint = await post(owner, `/admin/keys/${id}/rotate`, { mode: 'mint' });
      expect(plainMint.status).toBe(303);
      expect((await page(owner, `/admin/keys/${id}`)).text).toContain('The new key must come from an admin');

      const third = secret(openai.generateKey());
      const plain = await post(owner, `/admin/keys/${id}/rotate`, { mode: 'key', key: third });
      expect(plain.status).toBe(303);
      const after = await page(owner, `/admin/keys/${id}`);
      expect(after.text).toContain(`Rotated Rotate OpenAI: ${maskSecret(fresh)} → ${maskSecret(third)}.`);
      expect(after.text).toContain(`<code>${maskSecret(third)}</code> <small class="muted">version 3</small>`);
      const audit = await audited<{ outcome: string; details: Record<string, unknown> }>(
        `SELECT outcome, details FROM audit_log WHERE action = 'api-key.rotate' AND target_id = $1 ORDER BY seq`,
        [id],
        6,
      );
      expect(audit.map((a) => a.outcome)).toEqual(['failure', 'success', 'failure', 'failure', 'failure', 'success']);
      expect(audit[1].details).toMatchObject({ oldHint: maskSecret(old), newHint: maskSecret(fresh), source: 'admin' });
    });

    it('rotates an OpenRouter key by having the provider mint the new one', async () => {
      const management = secret(openrouter.generateManagementKey());
      const first = secret(openrouter.generateKey());
      const created = await post(owner, '/admin/keys', {
        provider: 'openrouter',
        name: 'Mint OpenRouter',
        key: first,
        managementKey: management,
      });
      expect(created.status).toBe(303);
      const url = created.headers.location;
      const shown = await page(owner, url);
      expect(shown.text).toContain(`<code>${maskSecret(management)}</code>`);
      expect(shown.text).toContain('Mint a new key with OpenRouter');

      const res = await hx(owner, 'post', `${url}/rotate`, { mode: 'mint', gracePeriodSeconds: '60' });
      expect(res.status).toBe(200);
      const minted = secret(openrouter.mintedKeys.at(-1)!);
      expect(res.text).toContain(
        `Rotated: <code>${maskSecret(first)}</code> → <code>${maskSecret(minted)}</code> (minted by OpenRouter)`,
      );
      expect(res.text).toContain('<td>provisioned</td>');
      for (const s of [management, first, minted]) expect(res.text).not.toContain(s);

      // The minted key is the one in use now.
      const verified = await hx(owner, 'post', `${url}/verify`, { from: 'page' });
      expect(verified.text).toContain('status-ok">valid</span>');
      expect(openrouter.requests.at(-1)).toMatchObject({ key: minted });
    });
  });

  describe('Revoke and delete', () => {
    it('asks for confirmation, then the row shows revoked with no actions but View', async () => {
      const key = secret(openai.generateKey());
      const { id } = await addKey({ provider: 'openai', name: 'Revoke OpenAI', key });
      const list = await page(owner, '/admin/keys?q=Revoke');
      // Without JavaScript the button opens the confirmation page; htmx asks with hx-confirm.
      expect(rowOf(list.text, id)).toMatch(
        new RegExp(
          `<form method="get" action="/admin/keys/${id}/revoke" [^>]*hx-vals='\\{"confirm": "yes"\\}' hx-confirm=`,
        ),
      );

      const confirm = await page(owner, `/admin/keys/${id}/revoke?from=list`);
      expect(confirm.text).toContain('Revoke “Revoke OpenAI”?');
      expect(confirm.text).toContain(`<form method="post" action="/admin/keys/${id}/revoke"`);
      expect(confirm.text).toContain('name="confirm" value="yes"');

      const unconfirmed = await post(owner, `/admin/keys/${id}/revoke`, { from: 'list' });
      expect(unconfirmed.status).toBe(303);
      expect(unconfirmed.headers.location).toBe(`/admin/keys/${id}/revoke?from=list`);
      const stillLive = await t.dataSource.query(`SELECT revoked_at FROM api_keys WHERE id = $1`, [id]);
      expect(stillLive[0].revoked_at).toBeNull();

      const row = await hx(owner, 'post', `/admin/keys/${id}/revoke`, { from: 'list', confirm: 'yes' });
      expect(row.status).toBe(200);
      expect(row.text).toMatch(new RegExp(`^<tr id="key-${id}">`));
      expect(row.text).toContain('status-off">revoked</span>');
      expect(row.text).not.toContain('<form');
      expect(row.text).toContain(`<a href="/admin/keys/${id}">View</a>`);

      // Verifying a revoked key is refused by the service: said in the row, with 409.
      const again = await hx(owner, 'post', `/admin/keys/${id}/verify`, { from: 'list' });
      expect(again.status).toBe(409);
      expect(again.text).toMatch(new RegExp(`^<tr id="key-${id}">`));
      expect(again.text).toContain('Key revoked');

      const keyPage = await page(owner, `/admin/keys/${id}`);
      expect(keyPage.text).not.toMatch(new RegExp(`action="/admin/keys/${id}(/verify|/limits|/rotate|/revoke)?"`));
      expect(keyPage.text).toContain(`action="/admin/keys/${id}/delete"`);

      const audit = await audited<{ outcome: string; reason: string }>(
        `SELECT outcome, reason FROM audit_log WHERE action = 'api-key.revoke' AND target_id = $1 ORDER BY seq`,
        [id],
        2,
      );
      expect(audit).toEqual([
        { outcome: 'failure', reason: 'not confirmed' },
        { outcome: 'success', reason: null },
      ]);
    });

    it('revokes and deletes without JavaScript through the confirmation pages', async () => {
      const key = secret(openai.generateKey());
      const { id } = await addKey({ provider: 'openai', name: 'Plain revoke', key });
      const revoked = await post(owner, `/admin/keys/${id}/revoke`, { confirm: 'yes' });
      expect(revoked.status).toBe(303);
      expect(revoked.headers.location).toBe(`/admin/keys/${id}`);
      const shown = await page(owner, `/admin/keys/${id}`);
      expect(shown.text).toContain(`Revoked Plain revoke (${maskSecret(key)})`);

      const twice = await post(owner, `/admin/keys/${id}/revoke`, { confirm: 'yes' });
      expect(twice.status).toBe(303);
      expect((await page(owner, `/admin/keys/${id}`)).text).toContain('Key already revoked');

      const confirm = await page(owner, `/admin/keys/${id}/delete`);
      expect(confirm.text).toContain('Delete “Plain revoke”?');
      const deleted = await post(owner, `/admin/keys/${id}/delete`, { confirm: 'yes' });
      expect(deleted.status).toBe(303);
      expect(deleted.headers.location).toBe('/admin/keys');
      expect((await page(owner, '/admin/keys')).text).toContain('Deleted Plain revoke and its history.');
      expect(await t.dataSource.query(`SELECT 1 FROM api_keys WHERE id = $1`, [id])).toHaveLength(0);
      const [audit] = await audited<{ details: { subject?: { name: string } } }>(
        `SELECT details FROM audit_log WHERE action = 'api-key.delete' AND target_id = $1 AND outcome = 'success'`,
        [id],
        1,
      );
      expect(audit.details.subject).toMatchObject({ name: 'Plain revoke' });

      // A live key cannot be deleted: the service says so inline.
      const live = await addKey({ provider: 'openai', name: 'Live key', key: secret(openai.generateKey()) });
      const refused = await hx(owner, 'post', `/admin/keys/${live.id}/delete`, { confirm: 'yes' });
      expect(refused.status).toBe(409);
      expect(refused.text).toContain('Revoke the key first');
      expect(refused.text).toMatch(/^<section class="card" id="key-danger">/);
    });
  });

  describe('Permissions and CSRF', () => {
    let liveId: string;

    beforeAll(async () => {
      liveId = (await addKey({ provider: 'openai', name: 'Roles OpenAI', key: secret(openai.generateKey()) })).id;
    });

    it('shows an operator Verify but no Revoke, and refuses a revoke with 403', async () => {
      const operator = await createUser(t.http, token, 'operator');
      const s = new ConsoleSession(t.http);
      await s.signIn(operator.email, operator.password);
      const list = await page(s, '/admin/keys?q=Roles');
      const row = rowOf(list.text, liveId)!;
      expect(row).toContain('/verify');
      expect(row).not.toContain('/revoke');
      const keyPage = await page(s, `/admin/keys/${liveId}`);
      expect(keyPage.text).not.toContain('/revoke');
      expect(keyPage.text).toContain(`action="/admin/keys/${liveId}/rotate"`);

      const refused = await post(s, `/admin/keys/${liveId}/revoke`, { confirm: 'yes' });
      expect(refused.status).toBe(403);
      expect(refused.text).toMatch(/<!doctype html>/i);
      const htmx = await hx(s, 'post', `/admin/keys/${liveId}/revoke`, { confirm: 'yes', from: 'list' });
      expect(htmx.status).toBe(403);
      expect(htmx.headers['hx-retarget']).toBe('#flash');
      expect((await s.agent.get(`/admin/keys/${liveId}/revoke`).redirects(0)).status).toBe(403);
      const [key] = await t.dataSource.query(`SELECT revoked_at FROM api_keys WHERE id = $1`, [liveId]);
      expect(key.revoked_at).toBeNull();
      const denied = await audited(
        `SELECT 1 FROM audit_log WHERE action = 'access.denied' AND actor_email = $1`,
        [operator.email],
        1,
      );
      expect(denied.length).toBeGreaterThan(0);
    });

    it('shows an auditor the list and the key page without a single form that changes anything', async () => {
      const auditor = await createUser(t.http, token, 'auditor');
      const s = new ConsoleSession(t.http);
      await s.signIn(auditor.email, auditor.password);
      const list = await page(s, '/admin/keys');
      expect(list.text).toContain('Roles OpenAI');
      expect(list.text).not.toMatch(/action="\/admin\/keys\/[^"]+\/(verify|revoke)"/);
      expect(list.text).not.toContain('href="/admin/keys/new"');
      const keyPage = await page(s, `/admin/keys/${liveId}`);
      expect(keyPage.text).toContain('Roles OpenAI');
      expect(keyPage.text).not.toMatch(/<form[^>]*action="\/admin\/keys/);
      expect(keyPage.text).not.toContain('hx-post');
      expect((await s.agent.get('/admin/keys/new').redirects(0)).status).toBe(403);
      expect((await post(s, `/admin/keys/${liveId}/verify`)).status).toBe(403);
    });

    it('refuses a state-changing post without the CSRF token', async () => {
      const form = await owner.agent
        .post(`/admin/keys/${liveId}/revoke`)
        .type('form')
        .send({ confirm: 'yes' })
        .redirects(0);
      expect(form.status).toBe(403);
      expect(form.text).toMatch(/CSRF/i);
      const htmx = await owner.agent
        .post(`/admin/keys/${liveId}/verify`)
        .set('HX-Request', 'true')
        .set('x-csrf-token', 'forged')
        .type('form')
        .send({ from: 'list' });
      expect(htmx.status).toBe(403);
      const created = await owner.agent
        .post('/admin/keys')
        .type('form')
        .send({ provider: 'openai', name: 'No token', key: secret(openai.generateKey()) });
      expect(created.status).toBe(403);
      answers.push(form, htmx, created);
      const [key] = await t.dataSource.query(`SELECT revoked_at FROM api_keys WHERE id = $1`, [liveId]);
      expect(key.revoked_at).toBeNull();
      expect(await t.dataSource.query(`SELECT 1 FROM api_keys WHERE name = 'No token'`)).toHaveLength(0);
    });
  });

  it('never sent a secret back: no page, fragment or header of this file holds one', async () => {
    expect(answers.length).toBeGreaterThan(50);
    expect(secrets.length).toBeGreaterThan(15);
    for (const res of answers) {
      const text = `${res.text ?? ''}\n${JSON.stringify(res.headers)}`;
      for (const s of secrets) expect(text).not.toContain(s);
    }
    const audit = await t.dataSource.query(`SELECT details::text AS d, reason FROM audit_log`);
    const dump = JSON.stringify(audit);
    for (const s of secrets) expect(dump).not.toContain(s);
    for (const s of secrets) expect(t.logs.text).not.toContain(s);
  });
});
