import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { startFakeProvider, type GroqFakeProvider, type OpenAiFakeProvider } from '../fake-providers';
import { AlertDeliveryService } from '../../src/alerts/alert-delivery.service';
import { AlertEvaluator } from '../../src/alerts/alert-evaluator';
import { REPORT_GENERATED } from '../../src/alerts/alert-messages';
import { KeyPool } from '../../src/gateway/key-pool';
import { LimitsService } from '../../src/limits/limits.service';
import { UsageRecorder } from '../../src/usage/usage-recorder';
import { startSmtpReceiver, startWebhookReceiver, verifySignature } from '../support/alert-receivers';
import { apiToken, createUser, startTestApp, type TestApp } from '../support/test-app';

const SIGNING_SECRET = 'whsec_test-signing-secret-0123456789';
const DAY = 86_400_000;

jest.setTimeout(30_000);

/**
 * Alerting end to end: usage through the gateway crossing a key's limit thresholds, signed
 * webhook deliveries, re-arming in the next period, two instances on one database, error
 * bursts, expiring keys, token budget projections and email over SMTP.
 */
describe('Alerts: rules, evaluation, channels and history', () => {
  let t: TestApp;
  let base: string;
  let openai: OpenAiFakeProvider;
  let groq: GroqFakeProvider;
  let hook: Awaited<ReturnType<typeof startWebhookReceiver>>;
  let smtp: Awaited<ReturnType<typeof startSmtpReceiver>>;
  let admin: string;
  let webhookId: string;
  const auth = () => ({ Authorization: `Bearer ${admin}` });

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- each caller reads its own answer's fields
  async function post(path: string, body: Record<string, unknown>, app = t): Promise<any> {
    const res = await request(app.http).post(path).set(auth()).send(body);
    if (res.status !== 201) throw new Error(`${path} answered ${res.status}: ${JSON.stringify(res.body)}`);
    return res.body;
  }
  const accessToken = async (app = t) =>
    (await post('/api/admin/access-tokens', { name: `app-${Math.random()}` }, app)).token as string;
  const chat = (token: string, origin = base, provider = 'openai') =>
    fetch(`${origin}/proxy/${provider}/${provider === 'groq' ? 'openai/' : ''}v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: provider === 'groq' ? 'llama-3.1-8b-instant' : 'gpt-5',
        messages: [{ role: 'user', content: 'hi' }],
      }),
    }).then(async (r) => {
      await r.arrayBuffer();
      return r.status;
    });
  /** Revokes every key of a provider, so that a test's traffic goes to its own key. */
  async function clearKeys(provider: string): Promise<void> {
    const { body } = await request(t.http).get(`/api/admin/api-keys?provider=${provider}&active=true`).set(auth());
    for (const key of body.keys) {
      await request(t.http).post(`/api/admin/api-keys/${key.id}/revoke`).set(auth()).expect(200);
    }
  }
  const firedFor = (ruleId: string) =>
    hook.received.filter((w) => w.json.type === 'alert.fired' && w.json.rule?.id === ruleId);
  const listen = async (app: TestApp) => {
    await new Promise<void>((resolve) => app.app.getHttpServer().listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(app.app.getHttpServer().address() as AddressInfo).port}`;
  };

  beforeAll(async () => {
    [openai, groq, hook, smtp] = await Promise.all([
      startFakeProvider('openai'),
      startFakeProvider('groq'),
      startWebhookReceiver(),
      startSmtpReceiver(),
    ]);
    process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
    process.env.KEYWARD_PROVIDER_GROQ_BASE_URL = groq.baseUrl;
    t = await startTestApp({
      KEYWARD_USAGE_FLUSH_MS: '50',
      KEYWARD_ALERT_DELIVERY_POLL_MS: '200',
      KEYWARD_ALERT_RETRY_BASE_MS: '100',
      KEYWARD_ALERT_SWEEP_SECONDS: '3600',
    });
    base = await listen(t);
    admin = await apiToken(t.http);
    webhookId = (
      await post('/api/admin/alert-channels', {
        name: 'ops webhook',
        type: 'webhook',
        url: `${hook.origin}/keyward`,
        signingSecret: SIGNING_SECRET,
      })
    ).id;
  });
  afterAll(async () => {
    await t.close();
    await Promise.all([openai.close(), groq.close(), hook.close(), smtp.close()]);
    delete process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL;
    delete process.env.KEYWARD_PROVIDER_GROQ_BASE_URL;
  });

  it('signs one webhook at 80 % of a key limit within 2 s, a second at 100 %, and re-arms next period', async () => {
    const key = await post('/api/admin/api-keys', {
      provider: 'openai',
      name: 'limited',
      key: openai.generateKey(),
      limit: { value: 10, unit: 'requests', period: 'monthly' },
    });
    const rule = await post('/api/admin/alert-rules', {
      name: 'key limit',
      kind: 'usage_threshold',
      severity: 'warning',
      scopeType: 'key',
      scopeId: key.id,
      thresholds: [100, 80],
      channelIds: [webhookId],
    });
    expect(rule.params).toEqual({ thresholds: [80, 100] });
    const token = await accessToken();

    for (let i = 0; i < 7; i++) expect(await chat(token)).toBe(200);
    await t.app.get(UsageRecorder).flush();
    await t.app.get(AlertEvaluator).settle();
    await t.app.get(AlertDeliveryService).drain();
    expect(firedFor(rule.id)).toHaveLength(0);

    expect(await chat(token)).toBe(200); // the 8th of 10: 80 %
    const crossedAt = Date.now();
    expect(await hook.waitFor(() => firedFor(rule.id).length > 0, 2000)).toBe(true);
    const [first] = firedFor(rule.id);
    expect(first.at - crossedAt).toBeLessThanOrEqual(2000);
    expect(verifySignature(SIGNING_SECRET, String(first.headers['x-keyward-signature']), first.body)).toBe(true);
    expect(verifySignature('another-secret-entirely', String(first.headers['x-keyward-signature']), first.body)).toBe(
      false,
    );
    expect(first.json.alert).toMatchObject({
      kind: 'usage_threshold',
      severity: 'warning',
      subject: { type: 'key', id: key.id },
      details: { threshold: 80, used: 8, limit: 10 },
    });
    expect(first.json.alert!.message).toContain('80 %');

    expect(await chat(token)).toBe(200); // 90 %: nothing new
    await t.app.get(UsageRecorder).flush();
    await t.app.get(AlertEvaluator).settle();
    await t.app.get(AlertDeliveryService).drain();
    expect(firedFor(rule.id)).toHaveLength(1);

    expect(await chat(token)).toBe(200); // 100 %
    expect(await hook.waitFor(() => firedFor(rule.id).length === 2, 2000)).toBe(true);
    expect(firedFor(rule.id)[1].json.alert!.details).toMatchObject({ threshold: 100, used: 10 });
    // A sweep finds the same conditions and sends nothing more.
    await t.app.get(AlertEvaluator).sweep();
    await t.app.get(AlertDeliveryService).drain();
    expect(firedFor(rule.id)).toHaveLength(2);

    // The period ends: the counter starts over with the next request, both alerts clear and resolve.
    await t.dataSource.query(`UPDATE api_keys SET reset_at = now() - interval '1 second' WHERE id = $1`, [key.id]);
    t.app.get(KeyPool).invalidate('openai');
    // Counters are read again, as they are every few seconds.
    await t.app.get(LimitsService).reload();
    expect(await chat(token)).toBe(200);
    await t.app.get(UsageRecorder).flush();
    await t.app.get(AlertEvaluator).settle();
    const states = await t.dataSource.query(
      `SELECT state, condition_active FROM alerts WHERE rule_id = $1 ORDER BY opened_at`,
      [rule.id],
    );
    expect(states).toEqual([
      { state: 'resolved', condition_active: false },
      { state: 'resolved', condition_active: false },
    ]);
    expect(
      await hook.waitFor(
        () => hook.received.filter((w) => w.json.type === 'alert.resolved' && w.json.rule?.id === rule.id).length === 2,
      ),
    ).toBe(true);

    for (let i = 0; i < 7; i++) expect(await chat(token)).toBe(200); // 8 of 10 in the new period
    expect(await hook.waitFor(() => firedFor(rule.id).length === 3, 2000)).toBe(true);
    expect(firedFor(rule.id)[2].json.alert!.details).toMatchObject({ threshold: 80, used: 8 });
  });

  it('raises one error-rate alert for a burst of provider 500s', async () => {
    for (let i = 0; i < 6; i++) {
      await post('/api/admin/api-keys', {
        provider: 'groq',
        name: `failing-${i}`,
        key: groq.generateKey({ kind: 'failing', status: 500 }),
      });
    }
    const rule = await post('/api/admin/alert-rules', {
      name: 'groq errors',
      kind: 'error_rate',
      severity: 'critical',
      scopeType: 'provider',
      scopeId: 'groq',
      errorRatePercent: 50,
      windowMinutes: 5,
      minRequests: 5,
      channelIds: [webhookId],
    });
    const token = await accessToken();
    for (let i = 0; i < 4; i++) await chat(token, base, 'groq');
    await t.app.get(UsageRecorder).flush();
    await t.app.get(AlertEvaluator).settle();
    await t.app.get(AlertEvaluator).sweep();
    await t.app.get(AlertDeliveryService).drain();
    const [{ failures }] = await t.dataSource.query(
      `SELECT count(*)::int AS failures FROM usage_events WHERE provider = 'groq' AND NOT success AND status = 500`,
    );
    expect(failures).toBeGreaterThanOrEqual(5);
    expect(await hook.waitFor(() => firedFor(rule.id).length === 1)).toBe(true);
    expect(firedFor(rule.id)[0].json.alert).toMatchObject({ kind: 'error_rate', details: { percent: 100 } });
    const alerts = await t.dataSource.query(`SELECT kind FROM alerts WHERE rule_id = $1`, [rule.id]);
    expect(alerts).toEqual([{ kind: 'error_rate' }]);
  });

  it('raises one alert for a key expiring in 7 days, and emails it through SMTP', async () => {
    const email = await post('/api/admin/alert-channels', {
      name: 'ops mail',
      type: 'email',
      smtpHost: '127.0.0.1',
      smtpPort: smtp.port,
      smtpUser: 'keyward',
      smtpPassword: 'smtp-password-not-shown',
      from: 'keyward@example.test',
      to: ['ops@example.test'],
    });
    expect(JSON.stringify(email)).not.toContain('smtp-password-not-shown');
    expect(email.secretHint).toBe('••••••');
    const expiresAt = new Date(Date.now() + 7 * DAY - 3_600_000);
    const key = await post('/api/admin/api-keys', {
      provider: 'openai',
      name: 'expiring',
      key: openai.generateKey(),
      expiresAt: expiresAt.toISOString(),
    });
    const rule = await post('/api/admin/alert-rules', {
      name: 'expiring keys',
      kind: 'expiring',
      severity: 'warning',
      scopeType: 'key',
      scopeId: key.id,
      withinDays: 7,
      channelIds: [webhookId, email.id],
    });
    await t.app.get(AlertEvaluator).sweep();
    await t.app.get(AlertEvaluator).sweep();
    await t.app.get(AlertDeliveryService).drain();
    expect(await hook.waitFor(() => firedFor(rule.id).length === 1)).toBe(true);
    expect(firedFor(rule.id)[0].json.alert!.message).toContain(`expires on ${expiresAt.toISOString().slice(0, 10)}`);
    expect(await t.dataSource.query(`SELECT count(*)::int AS n FROM alerts WHERE rule_id = $1`, [rule.id])).toEqual([
      { n: 1 },
    ]);

    expect(await smtp.waitFor((m) => m.some((mail) => mail.raw.includes('expiring keys')))).toBe(true);
    const mail = smtp.mails.find((m) => m.raw.includes('expiring keys'))!;
    expect(mail.to).toEqual(['ops@example.test']);
    expect(mail.from).toBe('keyward@example.test');
    expect(mail.auth).toEqual({ username: 'keyward', password: 'smtp-password-not-shown' });
    expect(mail.raw).toMatch(/Subject: \[Keyward\] WARNING: expiring keys/);
    expect(t.logs.text).not.toContain('smtp-password-not-shown');
  });

  it('raises one projected_overrun alert for a token on pace to exceed its budget, naming the day', async () => {
    const created = await post('/api/admin/access-tokens', { name: 'batch-jobs' });
    const now = new Date();
    // 20 requests on each of the last three days; a lifetime budget of 100 with 60 used.
    for (let d = 0; d < 3; d++) {
      // The first millisecond of each UTC day: in that day whatever the time of the run.
      const at = new Date(Math.floor(now.getTime() / DAY) * DAY - d * DAY + 1);
      await t.dataSource.query(
        `INSERT INTO usage_events ("timestamp", provider, access_token_id, endpoint, model, success, total_tokens)
         SELECT $1, 'openai', $2, '/chat/completions', 'gpt-5', true, 10 FROM generate_series(1, 20)`,
        [at, created.id],
      );
    }
    await t.dataSource.query(
      `INSERT INTO access_token_budgets (access_token_id, unit, period, "limit", used) VALUES ($1, 'requests', 'total', 100, 60)`,
      [created.id],
    );
    const rule = await post('/api/admin/alert-rules', {
      name: 'token pace',
      kind: 'projected_overrun',
      severity: 'warning',
      scopeType: 'token',
      scopeId: created.id,
      channelIds: [webhookId],
    });
    await t.app.get(AlertEvaluator).sweep();
    await t.app.get(AlertEvaluator).sweep();
    await t.app.get(AlertDeliveryService).drain();
    expect(await hook.waitFor(() => firedFor(rule.id).length === 1)).toBe(true);
    // Seven days (today included) hold 60 requests: 60/7 a day, so the last 40 last 40 / (60/7) days.
    const expected = new Date(now.getTime() + (40 / (60 / 7)) * DAY).toISOString().slice(0, 10);
    const alert = firedFor(rule.id)[0].json.alert;
    expect(alert!.details.exceedsOn).toBe(expected);
    expect(alert!.message).toContain(`on ${expected}`);
    const history = await request(t.http).get('/api/admin/alerts?kind=projected_overrun').set(auth()).expect(200);
    expect(history.body.alerts).toHaveLength(1);
    expect(history.body.alerts[0]).toMatchObject({ ruleName: 'token pace', state: 'open', subjectId: created.id });
  });

  it('retries a failing webhook with backoff and logs each attempt with its status code', async () => {
    hook.failNextRequests(2);
    const res = await request(t.http).post(`/api/admin/alert-channels/${webhookId}/test`).set(auth()).expect(200);
    expect(res.body).toMatchObject({ delivered: false, status: 'pending', statusCode: 500 });
    const deadline = Date.now() + 5000;
    let log: { id: string; status: string }[] = [];
    while (Date.now() < deadline) {
      log = (await request(t.http).get(`/api/admin/alert-channels/${webhookId}/deliveries`).set(auth()).expect(200))
        .body.deliveries;
      if (log[0]?.status === 'delivered') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(log[0]).toMatchObject({
      id: res.body.deliveryId,
      purpose: 'test',
      status: 'delivered',
      attempts: 3,
      lastStatusCode: 204,
    });
    const attempts = await t.dataSource.query(
      `SELECT attempt, status_code, at FROM alert_delivery_attempts WHERE delivery_id = $1 ORDER BY attempt`,
      [res.body.deliveryId],
    );
    expect(attempts.map((a: { status_code: number }) => a.status_code)).toEqual([500, 500, 204]);
    // 100 ms, then 400 ms: each pause four times the one before.
    expect(attempts[2].at.getTime() - attempts[1].at.getTime()).toBeGreaterThan(
      attempts[1].at.getTime() - attempts[0].at.getTime(),
    );
  });

  it('sends a generated report to the channels that want reports: email with the CSV, webhook with a link', async () => {
    await post('/api/admin/alert-channels', {
      name: 'reports mail',
      type: 'email',
      smtpHost: '127.0.0.1',
      smtpPort: smtp.port,
      from: 'keyward@example.test',
      to: ['finance@example.test'],
      reports: true,
    });
    const reportsHook = await post('/api/admin/alert-channels', {
      name: 'reports hook',
      type: 'webhook',
      url: `${hook.origin}/reports`,
      reports: true,
    });
    expect(reportsHook.signingSecret).toMatch(/^whsec_/);
    const shown = await request(t.http).get(`/api/admin/alert-channels/${reportsHook.id}`).set(auth()).expect(200);
    expect(JSON.stringify(shown.body)).not.toContain(reportsHook.signingSecret);
    t.app.get(EventEmitter2).emit(REPORT_GENERATED, {
      id: 'rep-2026-11',
      kind: 'monthly',
      periodStart: new Date('2026-11-01T00:00:00Z'),
      periodEnd: new Date('2026-12-01T00:00:00Z'),
      summaryHtml: '<h1>November</h1><p>Spend $12.34</p>',
      csv: 'provider,cost\nopenai,12.34\n',
    });
    expect(await smtp.waitFor((m) => m.some((x) => x.to.includes('finance@example.test')))).toBe(true);
    const report = smtp.mails.find((x) => x.to.includes('finance@example.test'))!;
    expect(report.raw).toContain('Monthly usage report 2026-11');
    expect(report.raw).toMatch(/Content-Type: text\/csv/i);
    expect(report.raw).toContain('keyward-monthly-2026-11-01.csv');
    expect(
      await hook.waitFor((all) => all.some((w) => w.path === '/reports' && w.json.type === 'report.generated')),
    ).toBe(true);
    const sent = hook.received.find((w) => w.path === '/reports')!;
    expect(sent.json.report).toMatchObject({ id: 'rep-2026-11', link: '/admin/reports/rep-2026-11' });
    expect(sent.json.summary).toBe('November Spend $12.34');
    expect(verifySignature(reportsHook.signingSecret, String(sent.headers['x-keyward-signature']), sent.body)).toBe(
      true,
    );
    // The ops webhook did not ask for reports.
    expect(hook.received.filter((w) => w.path === '/keyward' && w.json.type === 'report.generated')).toHaveLength(0);
  });

  it('raises key_invalid and no_healthy_key at once when the provider refuses the last key', async () => {
    await clearKeys('groq');
    const key = await post('/api/admin/api-keys', {
      provider: 'groq',
      name: 'dead',
      key: groq.generateKey({ kind: 'revoked' }),
    });
    const invalid = await post('/api/admin/alert-rules', {
      name: 'dead groq keys',
      kind: 'key_invalid',
      severity: 'critical',
      scopeType: 'provider',
      scopeId: 'groq',
      channelIds: [webhookId],
    });
    const none = await post('/api/admin/alert-rules', {
      name: 'groq has no key',
      kind: 'no_healthy_key',
      severity: 'critical',
      scopeType: 'provider',
      scopeId: 'groq',
      channelIds: [webhookId],
    });
    expect(await chat(await accessToken(), base, 'groq')).toBe(401);
    // No sweep: the gateway's own alert event is what triggers both rules.
    expect(await hook.waitFor(() => firedFor(invalid.id).length === 1 && firedFor(none.id).length === 1, 2000)).toBe(
      true,
    );
    expect(firedFor(invalid.id)[0].json.alert).toMatchObject({ subject: { type: 'key', id: key.id } });
    expect(firedFor(none.id)[0].json.alert).toMatchObject({ subject: { type: 'provider', id: 'groq' } });

    // A healthy key comes back: both clear on the next sweep (the dead key was revoked meanwhile).
    await request(t.http).post(`/api/admin/api-keys/${key.id}/revoke`).set(auth()).expect(200);
    await post('/api/admin/api-keys', { provider: 'groq', name: 'alive', key: groq.generateKey() });
    await t.app.get(AlertEvaluator).sweep();
    const states = await t.dataSource.query(
      `SELECT rule_id, state, condition_active FROM alerts WHERE rule_id = ANY($1) ORDER BY rule_id`,
      [[invalid.id, none.id]],
    );
    expect(states).toHaveLength(2);
    expect(
      states.every((a: { state: string; condition_active: boolean }) => a.state === 'resolved' && !a.condition_active),
    ).toBe(true);
  });

  it('raises one cost alert per period once a key spends past the amount', async () => {
    await clearKeys('openai');
    const key = await post('/api/admin/api-keys', {
      provider: 'openai',
      name: 'pricey',
      key: openai.generateKey({ kind: 'valid', usage: { input: 100_000, output: 100_000 } }),
    });
    const rule = await post('/api/admin/alert-rules', {
      name: 'pricey key',
      kind: 'cost_threshold',
      severity: 'warning',
      scopeType: 'key',
      scopeId: key.id,
      amountUsd: 1,
      period: 'monthly',
      channelIds: [webhookId],
    });
    const token = await accessToken();
    for (let i = 0; i < 3; i++) expect(await chat(token)).toBe(200);
    await t.app.get(UsageRecorder).flush();
    await t.app.get(AlertEvaluator).settle();
    await t.app.get(AlertEvaluator).sweep();
    await t.app.get(AlertDeliveryService).drain();
    expect(await hook.waitFor(() => firedFor(rule.id).length === 1)).toBe(true);
    const [{ cost }] = await t.dataSource.query(`SELECT sum(cost)::float AS cost FROM usage_events WHERE key_id = $1`, [
      key.id,
    ]);
    expect(cost).toBeGreaterThan(1);
    expect(firedFor(rule.id)[0].json.alert!.message).toContain('past $1.00');
    expect(await t.dataSource.query(`SELECT count(*)::int AS n FROM alerts WHERE rule_id = $1`, [rule.id])).toEqual([
      { n: 1 },
    ]);
  });

  it('raises a rotation_failed alert until a later rotation succeeds', async () => {
    const key = await post('/api/admin/api-keys', { provider: 'openai', name: 'rotating', key: openai.generateKey() });
    const rule = await post('/api/admin/alert-rules', {
      name: 'rotations',
      kind: 'rotation_failed',
      severity: 'critical',
      scopeType: 'key',
      scopeId: key.id,
      channelIds: [webhookId],
    });
    const rotation = (status: string, ageSeconds: number) =>
      t.dataSource.query(
        `INSERT INTO key_rotations (key_id, trigger, source, status, from_version, old_hint, error, created_at)
         VALUES ($1, 'schedule', 'none', $2, 1, 'sk-…abcd', $3, now() - $4 * interval '1 second')`,
        [key.id, status, status === 'failed' ? 'provider refused the new key' : null, ageSeconds],
      );
    await rotation('failed', 60);
    await t.app.get(AlertEvaluator).sweep();
    await t.app.get(AlertEvaluator).sweep();
    await t.app.get(AlertDeliveryService).drain();
    expect(await hook.waitFor(() => firedFor(rule.id).length === 1)).toBe(true);
    expect(firedFor(rule.id)[0].json.alert!.message).toContain('provider refused the new key');
    await rotation('completed', 0);
    await t.app.get(AlertEvaluator).sweep();
    const [alert] = await t.dataSource.query(`SELECT state, resolved_by FROM alerts WHERE rule_id = $1`, [rule.id]);
    expect(alert).toEqual({ state: 'resolved', resolved_by: 'condition cleared' });
  });

  it('watches tokens too: a budget past its threshold, a token about to expire; and a rotation coming due', async () => {
    const token = await post('/api/admin/access-tokens', {
      name: 'nightly',
      expiresAt: new Date(Date.now() + 2 * DAY).toISOString(),
    });
    await t.dataSource.query(
      `INSERT INTO access_token_budgets (access_token_id, unit, period, "limit", used, reset_at)
       VALUES ($1, 'usd', 'monthly', 50, 45, date_trunc('month', now()) + interval '1 month')`,
      [token.id],
    );
    const key = await post('/api/admin/api-keys', { provider: 'openai', name: 'to rotate', key: openai.generateKey() });
    await t.dataSource.query(`UPDATE api_keys SET next_rotation_at = now() + interval '2 days' WHERE id = $1`, [
      key.id,
    ]);
    const rules = await Promise.all([
      post('/api/admin/alert-rules', {
        name: 'token budget',
        kind: 'usage_threshold',
        severity: 'warning',
        scopeType: 'token',
        scopeId: token.id,
        thresholds: [50, 90, 100],
      }),
      post('/api/admin/alert-rules', {
        name: 'token expiry',
        kind: 'expiring',
        severity: 'info',
        scopeType: 'token',
        scopeId: token.id,
        withinDays: 3,
      }),
      post('/api/admin/alert-rules', {
        name: 'rotation soon',
        kind: 'rotation_due',
        severity: 'info',
        scopeType: 'key',
        scopeId: key.id,
        withinDays: 3,
      }),
    ]);
    await t.app.get(AlertEvaluator).sweep();
    await t.app.get(AlertEvaluator).sweep();
    const raised = await t.dataSource.query(
      `SELECT r.name, a.message, a.details FROM alerts a JOIN alert_rules r ON r.id = a.rule_id
        WHERE a.rule_id = ANY($1) ORDER BY r.name, a.opened_at`,
      [rules.map((r) => r.id)],
    );
    expect(
      raised.map((a: { name: string; details: { threshold?: number } }) => [a.name, a.details.threshold ?? null]),
    ).toEqual([
      ['rotation soon', null],
      ['token budget', 50],
      ['token budget', 90],
      ['token expiry', null],
    ]);
    expect(raised[1].message).toContain('access token nightly');
    expect(raised[2].message).toContain('90 % of its monthly budget ($45.00 of $50.00)');
    expect(raised[3].message).toMatch(/access token nightly .* expires on \d{4}-\d{2}-\d{2}, in 2 days/);
  });

  describe('API', () => {
    it('refuses bad rules with problem+json naming the field', async () => {
      const missing = await request(t.http)
        .post('/api/admin/alert-rules')
        .set(auth())
        .send({ name: 'x', kind: 'usage_threshold', severity: 'warning' })
        .expect(400);
      expect(missing.headers['content-type']).toMatch(/application\/problem\+json/);
      expect(missing.body.errors).toEqual([
        { field: 'thresholds', messages: ['thresholds is required for a usage_threshold rule'] },
      ]);
      const bad = await request(t.http)
        .post('/api/admin/alert-rules')
        .set(auth())
        .send({ name: '', kind: 'loud', severity: 'extreme', thresholds: [0], surprise: 1 })
        .expect(400);
      const fields = bad.body.errors.map((e: { field: string }) => e.field).sort();
      expect(fields).toEqual(['kind', 'name', 'severity', 'surprise', 'thresholds']);
      const scope = await request(t.http)
        .post('/api/admin/alert-rules')
        .set(auth())
        .send({ name: 'x', kind: 'no_healthy_key', severity: 'info', scopeType: 'token', scopeId: 'abc' })
        .expect(400);
      expect(scope.body.errors[0]).toMatchObject({ field: 'scopeType' });
      const unknown = await request(t.http)
        .post('/api/admin/alert-rules')
        .set(auth())
        .send({ name: 'x', kind: 'key_invalid', severity: 'info', scopeType: 'provider', scopeId: 'nope' })
        .expect(400);
      expect(unknown.body.errors[0]).toMatchObject({ field: 'scopeId' });
    });

    it('lets operators and auditors read rules and alerts but not change them', async () => {
      const rule = await post('/api/admin/alert-rules', {
        name: 'dead keys',
        kind: 'key_invalid',
        severity: 'critical',
      });
      for (const role of ['operator', 'auditor']) {
        const user = await createUser(t.http, admin, role);
        const token = await apiToken(t.http, user.email, user.password);
        const as = { Authorization: `Bearer ${token}` };
        await request(t.http).get('/api/admin/alert-rules').set(as).expect(200);
        await request(t.http).get('/api/admin/alerts').set(as).expect(200);
        await request(t.http).get('/api/admin/alert-channels').set(as).expect(200);
        await request(t.http)
          .post('/api/admin/alert-rules')
          .set(as)
          .send({ name: 'x', kind: 'key_invalid', severity: 'info' })
          .expect(403);
        await request(t.http).patch(`/api/admin/alert-rules/${rule.id}`).set(as).send({ enabled: false }).expect(403);
        await request(t.http).delete(`/api/admin/alert-channels/${webhookId}`).set(as).expect(403);
      }
      await request(t.http).get('/api/admin/alert-rules').expect(401);
      const updated = await request(t.http)
        .patch(`/api/admin/alert-rules/${rule.id}`)
        .set(auth())
        .send({ enabled: false, severity: 'info' })
        .expect(200);
      expect(updated.body).toMatchObject({ enabled: false, severity: 'info', kind: 'key_invalid' });
      await request(t.http).delete(`/api/admin/alert-rules/${rule.id}`).set(auth()).expect(204);
      await request(t.http).get(`/api/admin/alert-rules/${rule.id}`).set(auth()).expect(404);
    });

    it('never answers a channel secret back, and refuses a channel missing what its type needs', async () => {
      const slack = await post('/api/admin/alert-channels', {
        name: 'slack',
        type: 'slack',
        slackUrl: `${hook.origin}/services/T000/B000/very-secret-slack-path`,
      });
      const listed = await request(t.http).get('/api/admin/alert-channels').set(auth()).expect(200);
      const text = JSON.stringify(listed.body);
      expect(text).not.toContain('very-secret-slack-path');
      expect(text).not.toContain(SIGNING_SECRET);
      expect(slack.secretHint).toBe(`${hook.origin}/…`);
      const tested = await request(t.http).post(`/api/admin/alert-channels/${slack.id}/test`).set(auth()).expect(200);
      expect(tested.body).toMatchObject({ delivered: true, statusCode: 204 });
      const got = hook.received.find((w) => w.path.endsWith('very-secret-slack-path'))!;
      expect(got.json.text).toContain('This is a test from Keyward');
      const row = await t.dataSource.query(`SELECT secret_ciphertext::text AS c FROM alert_channels WHERE id = $1`, [
        slack.id,
      ]);
      expect(row[0].c).not.toContain('very-secret');
      const missing = await request(t.http)
        .post('/api/admin/alert-channels')
        .set(auth())
        .send({ name: 'm', type: 'email' })
        .expect(400);
      expect(missing.body.errors.map((e: { field: string }) => e.field)).toEqual(['smtpHost', 'from', 'to']);
      await request(t.http)
        .post('/api/admin/alert-channels')
        .set(auth())
        .send({ name: 'w', type: 'webhook', url: 'ftp://x' })
        .expect(400);
      expect(t.logs.text).not.toContain('very-secret-slack-path');
      // Neither does the audit log, which records what each change asked for.
      const audit = await t.dataSource.query(`SELECT row_to_json(a)::text AS row FROM audit_log a`);
      const auditText = audit.map((r: { row: string }) => r.row).join('\n');
      expect(auditText).toContain('alert-channel.create');
      for (const secret of ['very-secret-slack-path', SIGNING_SECRET, 'smtp-password-not-shown']) {
        expect(auditText).not.toContain(secret);
      }
    });

    it('keeps what fired across a rename, and judges afresh when the settings change', async () => {
      const key = await post('/api/admin/api-keys', {
        provider: 'openai',
        name: 'soon',
        key: openai.generateKey(),
        expiresAt: new Date(Date.now() + 3 * DAY).toISOString(),
      });
      const rule = await post('/api/admin/alert-rules', {
        name: 'soon',
        kind: 'expiring',
        severity: 'info',
        scopeType: 'key',
        scopeId: key.id,
        withinDays: 7,
      });
      const alerts = () =>
        t.dataSource.query(`SELECT state, condition_active, resolved_by FROM alerts WHERE rule_id = $1`, [rule.id]);
      await t.app.get(AlertEvaluator).sweep();
      expect(await alerts()).toEqual([{ state: 'open', condition_active: true, resolved_by: null }]);
      await request(t.http)
        .patch(`/api/admin/alert-rules/${rule.id}`)
        .set(auth())
        .send({ name: 'renamed' })
        .expect(200);
      await t.app.get(AlertEvaluator).sweep();
      expect(await alerts()).toEqual([{ state: 'open', condition_active: true, resolved_by: null }]);
      await request(t.http).patch(`/api/admin/alert-rules/${rule.id}`).set(auth()).send({ withinDays: 1 }).expect(200);
      await t.app.get(AlertEvaluator).sweep();
      expect(await alerts()).toEqual([{ state: 'resolved', condition_active: false, resolved_by: 'rule changed' }]);
    });

    it('filters the history, acknowledges and resolves', async () => {
      const open = await request(t.http).get('/api/admin/alerts?state=open&severity=warning').set(auth()).expect(200);
      expect(open.body.total).toBeGreaterThan(0);
      expect(
        open.body.alerts.every(
          (a: { state: string; severity: string }) => a.state === 'open' && a.severity === 'warning',
        ),
      ).toBe(true);
      const id = open.body.alerts[0].id;
      const acked = await request(t.http).post(`/api/admin/alerts/${id}/acknowledge`).set(auth()).expect(200);
      expect(acked.body).toMatchObject({ state: 'acknowledged', acknowledgedBy: 'owner@example.test' });
      const again = await request(t.http).post(`/api/admin/alerts/${id}/acknowledge`).set(auth()).expect(409);
      expect(again.headers['content-type']).toMatch(/problem\+json/);
      const resolved = await request(t.http).post(`/api/admin/alerts/${id}/resolve`).set(auth()).expect(200);
      expect(resolved.body).toMatchObject({ state: 'resolved', resolvedBy: 'owner@example.test' });
      const later = await request(t.http).get('/api/admin/alerts?from=2999-01-01').set(auth()).expect(200);
      expect(later.body).toMatchObject({ total: 0, alerts: [] });
      await request(t.http).get('/api/admin/alerts?state=closed').set(auth()).expect(400);
      await request(t.http).post('/api/admin/alerts/not-a-uuid/acknowledge').set(auth()).expect(400);
    });
  });

  // Last: passport's strategies are process-wide, so once the second instance closes, the first
  // no longer signs anyone in.
  it('delivers each alert once with two instances on one database', async () => {
    const second = await startTestApp(
      { KEYWARD_USAGE_FLUSH_MS: '50', KEYWARD_ALERT_DELIVERY_POLL_MS: '200', KEYWARD_ALERT_SWEEP_SECONDS: '3600' },
      { databaseUrl: t.databaseUrl, keyring: t.keyring },
    );
    try {
      const secondBase = await listen(second);
      await clearKeys('openai');
      const key = await post('/api/admin/api-keys', {
        provider: 'openai',
        name: 'shared',
        key: openai.generateKey(),
        limit: { value: 20, unit: 'requests', period: 'monthly' },
      });
      const rule = await post('/api/admin/alert-rules', {
        name: 'shared limit',
        kind: 'usage_threshold',
        severity: 'critical',
        scopeType: 'key',
        scopeId: key.id,
        thresholds: [50, 80, 100],
        channelIds: [webhookId],
      });
      const token = await accessToken();
      // Both instances serve the traffic, commit their own batches and evaluate them.
      for (let i = 0; i < 20; i++) expect(await chat(token, i % 2 === 0 ? base : secondBase)).toBe(200);
      await Promise.all([t, second].map((app) => app.app.get(UsageRecorder).flush()));
      // Both sweep at once as well: still one alert per threshold.
      await Promise.all([t, second].map((app) => app.app.get(AlertEvaluator).sweep()));
      await Promise.all([t, second].map((app) => app.app.get(AlertEvaluator).settle()));
      await Promise.all([t, second].map((app) => app.app.get(AlertDeliveryService).drain()));
      expect(await hook.waitFor(() => firedFor(rule.id).length >= 3)).toBe(true);
      await new Promise((r) => setTimeout(r, 500));
      const thresholds = firedFor(rule.id)
        .map((w) => w.json.alert!.details.threshold!)
        .sort((a, b) => a - b);
      expect(thresholds).toEqual([50, 80, 100]);
      const deliveries = await t.dataSource.query(
        `SELECT d.status, count(a.id)::int AS attempts FROM alert_deliveries d JOIN alerts al ON al.id = d.alert_id
           LEFT JOIN alert_delivery_attempts a ON a.delivery_id = d.id WHERE al.rule_id = $1 GROUP BY d.id`,
        [rule.id],
      );
      expect(deliveries).toEqual([1, 2, 3].map(() => ({ status: 'delivered', attempts: 1 })));
    } finally {
      await second.close();
    }
  });
});
