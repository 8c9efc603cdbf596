import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { generateOpenAiKey } from '../fake-providers';
import { UsageRecorder } from '../../src/usage/usage-recorder';
import { apiToken, startTestApp, type TestApp } from '../support/test-app';

/**
 * The provider's connections as a real provider treats them: a connection can break before any
 * answer, and an answer can fall silent in the middle. Plain node:http servers here, speaking
 * OpenAI's formats, so that the connection itself can be reset or held.
 */

interface Provider {
  server: Server;
  baseUrl: string;
  /** Requests received. */
  requests: number;
}

async function startProvider(handle: (req: IncomingMessage, res: ServerResponse, p: Provider) => void) {
  const p = { requests: 0 } as Provider;
  p.server = createServer((req, res) => {
    p.requests++;
    req.resume();
    req.on('end', () => handle(req, res, p));
  });
  await new Promise<void>((resolve) => p.server.listen(0, '127.0.0.1', resolve));
  p.baseUrl = `http://127.0.0.1:${(p.server.address() as AddressInfo).port}/v1`;
  return p;
}

async function setUp(provider: Provider, env: NodeJS.ProcessEnv = {}) {
  process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = provider.baseUrl;
  const t = await startTestApp({ KEYWARD_USAGE_FLUSH_MS: '50', ...env });
  const admin = { Authorization: `Bearer ${await apiToken(t.http)}` };
  await request(t.http)
    .post('/api/admin/api-keys')
    .set(admin)
    .send({ provider: 'openai', name: 'only', key: generateOpenAiKey('proj') })
    .expect(201);
  const { token } = (await request(t.http).post('/api/admin/access-tokens').set(admin).send({ name: 'app' })).body;
  await new Promise<void>((resolve) => t.http.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(t.http.address() as AddressInfo).port}`;
  return { t, token: token as string, url };
}

describe('Gateway: provider connections', () => {
  let t: TestApp | undefined;
  let provider: Provider | undefined;

  afterEach(async () => {
    await t?.close();
    if (provider) await new Promise((resolve) => provider!.server.close(resolve));
    provider?.server.closeAllConnections();
    delete process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL;
    t = provider = undefined;
  });

  it('does not send a call a second time when a fresh connection breaks', async () => {
    provider = await startProvider((req) => req.socket.resetAndDestroy());
    const set = await setUp(provider);
    t = set.t;
    const res = await request(t.http)
      .post('/proxy/openai/v1/chat/completions')
      .set('Authorization', `Bearer ${set.token}`)
      .send({ model: 'gpt-5', messages: [{ role: 'user', content: 'hi' }] });
    expect(res.status).toBe(502);
    expect(res.headers['content-type']).toContain('application/problem+json');
    // The provider may have taken the work: one request, never repeated.
    expect(provider.requests).toBe(1);
  });

  it('ends a stream the provider leaves silent for longer than the idle timeout, and records it as incomplete', async () => {
    provider = await startProvider((req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(
        'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hel"}}]}\n\n',
      );
      // …and nothing more: no end, no [DONE].
    });
    const set = await setUp(provider, { KEYWARD_UPSTREAM_IDLE_TIMEOUT_MS: '300' });
    t = set.t;
    const started = Date.now();
    const res = await fetch(`${set.url}/proxy/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${set.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-5', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(res.status).toBe(200);
    // The client sees the event that came, then its connection cut: the answer is not complete.
    let text = '';
    let cut = false;
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body!) text += decoder.decode(chunk as Uint8Array, { stream: true });
    } catch {
      cut = true;
    }
    expect(cut).toBe(true);
    const took = Date.now() - started;
    expect(text).toContain('hel');
    expect(text).not.toContain('[DONE]');
    expect(took).toBeGreaterThanOrEqual(300);
    expect(took).toBeLessThan(10_000);

    // The record follows the cut (the relay settles after the client's connection is destroyed).
    let rows: unknown[] = [];
    for (let i = 0; i < 50 && rows.length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      await t.app.get(UsageRecorder).flush();
      rows = await t.dataSource.query(`SELECT success, stream FROM usage_events`);
    }
    expect(rows).toEqual([{ success: false, stream: true }]);
  });
});

describe('Gateway: idle provider connections', () => {
  let t: TestApp | undefined;
  let provider: Provider | undefined;

  afterAll(async () => {
    await t?.close();
    provider?.server.closeAllConnections();
    if (provider) await new Promise((resolve) => provider!.server.close(resolve));
    delete process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL;
  });

  it('closes a connection idle for 4 s itself, before a provider that closes at 5 s unannounced does', async () => {
    const sockets = new Set<unknown>();
    provider = await startProvider((req, res) => {
      sockets.add(req.socket);
      // A stream with its own Connection header: Node then sends no Keep-Alive timeout hint.
      res.writeHead(200, { 'content-type': 'text/event-stream', connection: 'keep-alive' });
      res.end(
        'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}],' +
          '"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}\n\ndata: [DONE]\n\n',
      );
    });
    provider.server.keepAliveTimeout = 5_000;
    const set = await setUp(provider);
    t = set.t;
    const call = async () => {
      const res = await fetch(`${set.url}/proxy/openai/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${set.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-5', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
      });
      return { status: res.status, text: await res.text() };
    };
    expect((await call()).status).toBe(200);
    expect((await call()).status).toBe(200);
    expect(sockets.size).toBe(1);
    // Past Keyward's idle limit, short of the provider's: the next call gets a new connection.
    await new Promise((resolve) => setTimeout(resolve, 4_600));
    const late = await call();
    expect(late.status).toBe(200);
    expect(late.text).toContain('[DONE]');
    expect(sockets.size).toBe(2);
  }, 20_000);
});
