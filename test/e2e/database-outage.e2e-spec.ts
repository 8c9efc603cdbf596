import type { AddressInfo } from 'node:net';
import { Client } from 'pg';
import request from 'supertest';
import { ChangeFeedService } from '../../src/database/change-feed';
import { UsageRecorder } from '../../src/usage/usage-recorder';
import { startFakeProvider, type OpenAiFakeProvider } from '../fake-providers';
import { TcpProxy } from '../support/tcp-proxy';
import { apiToken, startTestApp, type TestApp } from '../support/test-app';
import { createTestDatabase } from '../support/test-database';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * Two instances on one PostgreSQL, reached through a TCP proxy the test can cut (a stopped or
 * restarted server) and hang (a frozen one), so that the machine's server is never touched.
 */
describe('PostgreSQL outages and change propagation between two instances', () => {
  let openai: OpenAiFakeProvider;
  let proxy: TcpProxy;
  let directUrl: string;
  let db: Client;
  let a: TestApp;
  let b: TestApp;
  let baseB: string;
  let admin: string;
  const auth = () => ({ Authorization: `Bearer ${admin}` });

  const addKey = async (name: string, key: string, priority: number) => {
    const res = await request(a.http)
      .post('/api/admin/api-keys')
      .set(auth())
      .send({ provider: 'openai', name, key, priority });
    if (res.status !== 201) throw new Error(`create answered ${res.status}: ${JSON.stringify(res.body)}`);
    return res.body.id as string;
  };
  const newToken = async () => {
    const res = await request(a.http)
      .post('/api/admin/access-tokens')
      .set(auth())
      .send({ name: `app-${Math.random()}` });
    return { id: res.body.accessToken?.id ?? res.body.id, token: res.body.token as string };
  };
  /** A call through instance B; returns its status and the provider key it used. */
  const callB = async (token: string) => {
    const before = openai.requests.length;
    const res = await fetch(`${baseB}/proxy/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-5', messages: [{ role: 'user', content: 'hi' }] }),
    });
    await res.arrayBuffer();
    return { status: res.status, key: openai.requests.slice(before).at(-1)?.key };
  };
  const rows = async (token: string) =>
    Number(
      (
        await db.query<{ n: string }>(
          `SELECT count(*) AS n FROM usage_events e JOIN access_tokens t ON t.id = e.access_token_id WHERE t.token_hint = $1 AND e.success`,
          [`kw_…${token.slice(-4)}`],
        )
      ).rows[0].n,
    );
  const drained = async () => (await Promise.all([a, b].map((x) => x.app.get(UsageRecorder).flush()))) && true;
  const listening = () => [a, b].every((x) => x.app.get(ChangeFeedService).isListening);
  // Nest's logger is process-wide: both instances' lines may land in either capture.
  const logCount = (pattern: RegExp) => [...a.logs.lines, ...b.logs.lines].filter((l) => pattern.test(l)).length;

  beforeAll(async () => {
    openai = await startFakeProvider('openai');
    process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
    directUrl = await createTestDatabase();
    proxy = await TcpProxy.start(directUrl);
    a = await startTestApp({ KEYWARD_USAGE_FLUSH_MS: '50' }, { databaseUrl: proxy.through(directUrl) });
    b = await startTestApp(
      { KEYWARD_USAGE_FLUSH_MS: '50' },
      { databaseUrl: proxy.through(directUrl), keyring: a.keyring },
    );
    await new Promise<void>((resolve) => b.app.getHttpServer().listen(0, '127.0.0.1', resolve));
    baseB = `http://127.0.0.1:${(b.app.getHttpServer().address() as AddressInfo).port}`;
    admin = await apiToken(a.http);
    db = new Client({ connectionString: directUrl });
    await db.connect();
  }, 60_000);

  afterAll(async () => {
    proxy.restore();
    await db?.end();
    await a?.close();
    await b?.close();
    await proxy?.close();
    await openai.close();
    delete process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL;
  }, 30_000);

  /** Key revoke, limit change and token revoke on A, each seen by B within 1 s. */
  async function changesReachB(): Promise<void> {
    const secrets = [openai.generateKey(), openai.generateKey(), openai.generateKey()];
    const ids = [
      await addKey('first', secrets[0], 1),
      await addKey('second', secrets[1], 2),
      await addKey('third', secrets[2], 3),
    ];
    const { token } = await newToken();
    const tokenId = (
      await db.query<{ id: string }>(`SELECT id FROM access_tokens WHERE token_hint = $1`, [`kw_…${token.slice(-4)}`])
    ).rows[0].id;
    // B caches the keys and the token (30 s while listening: only a notification can change them).
    for (let i = 0; i < 3; i++) expect(await callB(token)).toEqual({ status: 200, key: secrets[0] });

    await request(a.http).post(`/api/admin/api-keys/${ids[0]}/revoke`).set(auth()).expect(200);
    await sleep(1_000);
    for (let i = 0; i < 3; i++) expect(await callB(token)).toEqual({ status: 200, key: secrets[1] });

    // A limit the second key is already past (a new limit counts from zero: one more call fits).
    await request(a.http)
      .put(`/api/admin/api-keys/${ids[1]}/limits`)
      .set(auth())
      .send({ value: 1, unit: 'requests', period: 'monthly' })
      .expect(200);
    await sleep(1_000);
    const used: (string | undefined)[] = [];
    for (let i = 0; i < 4; i++) {
      const call = await callB(token);
      expect(call.status).toBe(200);
      used.push(call.key);
    }
    expect(used.filter((k) => k === secrets[1]).length).toBeLessThanOrEqual(1);
    expect(used.slice(1)).toEqual([secrets[2], secrets[2], secrets[2]]);

    await request(a.http).post(`/api/admin/access-tokens/${tokenId}/revoke`).set(auth()).expect(200);
    await sleep(1_000);
    expect((await callB(token)).status).toBe(401);
    for (const id of ids.slice(1))
      await request(a.http).post(`/api/admin/api-keys/${id}/revoke`).set(auth()).expect(200);
  }

  it('key revoke, limit change and token revoke on A reach B within 1 s', async () => {
    await until('both change feeds to listen', listening);
    await changesReachB();
  }, 30_000);

  it('serves from caches through a 10 s outage, loses and double-counts no usage, and says so once', async () => {
    const key = openai.generateKey();
    const keyId = await addKey('outage', key, 1);
    const { token } = await newToken();
    for (let i = 0; i < 3; i++) expect((await callB(token)).status).toBe(200);
    const downLines = logCount(/PostgreSQL is unreachable/);
    const upLines = logCount(/PostgreSQL is reachable again/);

    proxy.cut();
    const statuses: number[] = [];
    const outageEnds = Date.now() + 10_000;
    let ready: request.Response | undefined;
    while (Date.now() < outageEnds) {
      statuses.push((await callB(token)).status);
      if (!ready && statuses.length > 20) ready = await request(b.http).get('/health/ready');
      await sleep(20);
    }
    proxy.restore();
    expect(statuses.length).toBeGreaterThan(50);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(ready?.status).toBe(503);
    expect(ready?.body).toMatchObject({ database: 'down', servingFromCache: true });

    await until('the database to be back for both', async () => listening() && (await drained()));
    await until('usage to be written', async () => (await rows(token)) >= statuses.length + 3);
    expect(await rows(token)).toBe(statuses.length + 3);
    // The key's counter took each record once as well.
    const [{ n }] = (await db.query<{ n: string }>(`SELECT count(*) AS n FROM usage_events WHERE key_id = $1`, [keyId]))
      .rows;
    expect(Number(n)).toBe(statuses.length + 3);
    // One line per instance when it went, one when it came back; none per request.
    expect(logCount(/PostgreSQL is unreachable/) - downLines).toBeLessThanOrEqual(2);
    expect(logCount(/PostgreSQL is unreachable/) - downLines).toBeGreaterThanOrEqual(1);
    expect(logCount(/PostgreSQL is reachable again/) - upLines).toBe(logCount(/PostgreSQL is unreachable/) - downLines);
    expect(logCount(/Writing \d+ usage record\(s\) failed/)).toBeLessThanOrEqual(2);
    expect((await request(b.http).get('/health/ready')).status).toBe(200);
    await request(a.http).post(`/api/admin/api-keys/${keyId}/revoke`).set(auth()).expect(200);
  }, 60_000);

  it('serves from caches while the database hangs, then writes everything', async () => {
    const { token } = await newToken();
    const keyId = await addKey('hang', openai.generateKey(), 1);
    for (let i = 0; i < 3; i++) expect((await callB(token)).status).toBe(200);
    proxy.hang();
    const statuses: number[] = [];
    const ends = Date.now() + 6_000;
    while (Date.now() < ends) {
      statuses.push((await callB(token)).status);
      await sleep(20);
    }
    proxy.restore();
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    await until('usage to be written', async () => (await rows(token)) >= statuses.length + 3, 30_000);
    expect(await rows(token)).toBe(statuses.length + 3);
    await request(a.http).post(`/api/admin/api-keys/${keyId}/revoke`).set(auth()).expect(200);
  }, 60_000);

  it('after a PostgreSQL restart, changes on A again reach B within 1 s', async () => {
    proxy.cut();
    await sleep(2_000);
    proxy.restore();
    await until('both change feeds to listen again', listening);
    await changesReachB();
  }, 60_000);
});
