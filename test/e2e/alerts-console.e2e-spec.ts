import request from 'supertest';
import { AlertsService } from '../../src/alerts/alerts.service';
import { startWebhookReceiver } from '../support/alert-receivers';
import { apiToken, ConsoleSession, createUser, startTestApp, type TestApp } from '../support/test-app';

jest.setTimeout(30_000);

/** The console's Alerts page over HTTP: with and without htmx, inline errors, row actions, roles. */
describe('Alerts console', () => {
  let t: TestApp;
  let owner: ConsoleSession;
  let admin: string;

  const seedAlert = async (message: string, severity = 'warning'): Promise<string> => {
    const [row] = await t.dataSource.query(
      `INSERT INTO alerts (kind, severity, dedupe_key, message) VALUES ('expiring', $1, $2, $3) RETURNING id`,
      [severity, `seed:${Math.random()}`, message],
    );
    // The navigation's count is cached; alerts raised by rules reset it, a seeded row must too.
    t.app.get(AlertsService).countChanged();
    return row.id;
  };

  beforeAll(async () => {
    t = await startTestApp();
    admin = await apiToken(t.http);
    owner = new ConsoleSession(t.http);
    await owner.signIn();
  });
  afterAll(() => t.close());

  it('replaces the placeholder with history, rules and channels', async () => {
    const res = await owner.page('/admin/alerts');
    expect(res.headers.vary).toMatch(/HX-Request/);
    expect(res.text).not.toContain('arrive with usage monitoring');
    for (const heading of ['History', 'Rules', 'Channels', 'Add a rule', 'Add a channel']) {
      expect(res.text).toContain(heading);
    }
    expect(res.text).toContain('No alerts match.');
  });

  it('creates a rule from the form without JavaScript, and shows a bad one with an inline error', async () => {
    const bad = await owner.post('/admin/alerts/rules', {
      name: 'Too loud',
      kind: 'usage_threshold',
      severity: 'warning',
      scopeType: 'all',
      thresholds: '',
    });
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('<html');
    expect(bad.text).toMatch(
      /<p class="field-error" id="rule-thresholds-error">Thresholds is required for a usage_threshold rule<\/p>/,
    );
    expect(bad.text).toContain('value="Too loud"');

    const worse = await owner.post('/admin/alerts/rules', {
      name: 'x',
      kind: 'usage_threshold',
      severity: 'warning',
      thresholds: '80, abc',
    });
    expect(worse.status).toBe(400);
    expect(worse.text).toContain('each threshold must be a whole percent from 1 to 1000');

    const ok = await owner.post('/admin/alerts/rules', {
      name: 'Key limits',
      kind: 'usage_threshold',
      severity: 'critical',
      scopeType: 'all',
      thresholds: '50, 80%, 100',
      enabled: 'true',
    });
    expect(ok.status).toBe(303);
    const page = await owner.page('/admin/alerts');
    expect(page.text).toContain('Rule &quot;Key limits&quot; created.');
    expect(page.text).toContain('at 50 / 80 / 100 %');
    const { body } = await request(t.http).get('/api/admin/alert-rules').set('Authorization', `Bearer ${admin}`);
    expect(body.rules).toEqual([
      expect.objectContaining({ name: 'Key limits', params: { thresholds: [50, 80, 100] } }),
    ]);
  });

  it('answers htmx with just the form, and the rules table on its event', async () => {
    const bad = await owner.htmx('post', '/admin/alerts/rules', { name: '', kind: 'expiring', severity: 'info' });
    expect(bad.status).toBe(400);
    expect(bad.text).not.toContain('<html');
    expect(bad.text).toMatch(/^<form[^>]+id="rule-form"/);
    expect(bad.text).toContain('Name is required');
    const missing = await owner.htmx('post', '/admin/alerts/rules', {
      name: 'Soon',
      kind: 'expiring',
      severity: 'info',
    });
    expect(missing.status).toBe(400);
    expect(missing.text).toContain('Within (days) is required for a expiring rule');
    const ok = await owner.htmx('post', '/admin/alerts/rules', {
      name: 'Expiring keys',
      kind: 'expiring',
      severity: 'info',
      withinDays: '7',
    });
    expect(ok.status).toBe(201);
    expect(ok.headers['hx-trigger']).toBe('rules-changed');
    expect(ok.text).toContain('Rule "Expiring keys" created.');
    const table = await owner.htmx('get', '/admin/alerts/rules');
    expect(table.text).toMatch(/^<div class="table-scroll">/);
    expect(table.text).toContain('within 7 days');
  });

  it('acknowledges with htmx (one row back) and resolves without JavaScript; the badge counts open alerts', async () => {
    const first = await seedAlert('Key A expires on 2026-12-10, in 7 days');
    const second = await seedAlert('Key B expires on 2026-12-11, in 8 days');
    const page = await owner.page('/admin/alerts');
    expect(page.text).toMatch(/<span class="nav-count" id="open-alert-count" title="open alerts">2<\/span>/);
    const acked = await owner.htmx('post', `/admin/alerts/${first}/acknowledge`);
    expect(acked.status).toBe(200);
    expect(acked.text).toMatch(new RegExp(`^<tr id="alert-${first}">`));
    expect(acked.text).toContain('acknowledged');
    expect(acked.text).toContain('by owner@example.test');
    expect(acked.text).not.toContain('Acknowledge</button>');
    const resolved = await owner.post(`/admin/alerts/${second}/resolve`);
    expect(resolved.status).toBe(303);
    expect(resolved.headers.location).toBe('/admin/alerts');
    const after = await owner.page('/admin/alerts?state=resolved');
    expect(after.text).toContain('Alert resolved.');
    expect(after.text).toContain('Key B expires');
    expect(after.text).not.toContain('Key A expires');
    const twice = await owner.post(`/admin/alerts/${second}/resolve`);
    expect(twice.status).toBe(303);
    expect((await owner.page('/admin/alerts')).text).toContain('Alert already resolved');
    const filtered = await owner.htmx('get', '/admin/alerts?state=acknowledged&severity=warning');
    expect(filtered.text).toMatch(/^<div class="table-scroll">/);
    expect(filtered.text).toContain('Key A expires');
  });

  it('shows a generated signing secret once, then only its mask', async () => {
    const created = await owner.post('/admin/alerts/channels', {
      name: 'Ops hook',
      type: 'webhook',
      url: 'http://127.0.0.1:9/hook',
    });
    expect(created.status).toBe(201);
    expect(created.headers['cache-control']).toBe('no-store');
    const secret = /id="new-signing-secret">(whsec_[A-Za-z0-9_-]+)</.exec(created.text)?.[1];
    expect(secret).toBeDefined();
    const later = await owner.page('/admin/alerts');
    expect(later.text).not.toContain(secret);
    expect(later.text).toContain(`<code>…${secret!.slice(-4)}</code>`);
    const bad = await owner.post('/admin/alerts/channels', {
      name: 'Mail',
      type: 'email',
      smtpPassword: 'typed-password-123',
    });
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('SMTP host is required for an email channel');
    expect(bad.text).not.toContain('typed-password-123');
  });

  it('sends a test from the channel row and shows how it went; a bad rule keeps its ticked channels', async () => {
    const hook = await startWebhookReceiver();
    try {
      const created = await owner.post('/admin/alerts/channels', {
        name: 'Receiver',
        type: 'webhook',
        url: `${hook.origin}/in`,
        signingSecret: 'a-signing-secret-for-tests',
      });
      expect(created.status).toBe(201);
      const { body } = await request(t.http).get('/api/admin/alert-channels').set('Authorization', `Bearer ${admin}`);
      const channel = body.channels.find((c: { name: string }) => c.name === 'Receiver');
      const row = await owner.htmx('post', `/admin/alerts/channels/${channel.id}/test`);
      expect(row.status).toBe(200);
      expect(row.text).toMatch(new RegExp(`^<tr id="channel-${channel.id}">`));
      expect(row.text).toContain('Test delivered (204).');
      expect(row.text).toMatch(/<span class="status status-ok">delivered<\/span> <code>204<\/code>/);
      expect(hook.received).toHaveLength(1);
      expect(hook.received[0].json.type).toBe('test');

      hook.failNextRequests(1);
      const failed = await owner.post(`/admin/alerts/channels/${channel.id}/test`);
      expect(failed.status).toBe(303);
      expect((await owner.page('/admin/alerts')).text).toContain(
        'Test not delivered: answered 500; it will be retried.',
      );

      const bad = await owner.post('/admin/alerts/rules', {
        name: 'Needs days',
        kind: 'rotation_due',
        severity: 'info',
        channelIds: channel.id,
      });
      expect(bad.status).toBe(400);
      expect(bad.text).toContain('Within (days) is required for a rotation_due rule');
      expect(bad.text).toContain(`name="channelIds" value="${channel.id}" checked`);
    } finally {
      await hook.close();
    }
  });

  it('lets an auditor read the page but offers no forms, and refuses their posts', async () => {
    const user = await createUser(t.http, admin, 'auditor');
    const auditor = new ConsoleSession(t.http);
    await auditor.signIn(user.email, user.password);
    const page = await auditor.page('/admin/alerts');
    expect(page.text).toContain('Key limits');
    expect(page.text).not.toContain('Add a rule');
    expect(page.text).not.toContain('Acknowledge</button>');
    const refused = await auditor.post('/admin/alerts/rules', { name: 'x', kind: 'key_invalid', severity: 'info' });
    expect(refused.status).toBe(403);
  });
});
