import { createAnthropic } from '@ai-sdk/anthropic';
import { createGroq } from '@ai-sdk/groq';
import { createOpenAI } from '@ai-sdk/openai';
import Anthropic from '@anthropic-ai/sdk';
import { ChatAnthropic } from '@langchain/anthropic';
import { ChatOpenAI } from '@langchain/openai';
import { createOpenRouter } from '@openrouter/ai-sdk-provider';
import { generateText, jsonSchema, streamText, tool, type LanguageModel } from 'ai';
import Groq from 'groq-sdk';
import type { AddressInfo } from 'node:net';
import OpenAI, { toFile } from 'openai';
import request from 'supertest';
import { UsageRecorder } from '../../src/usage/usage-recorder';
import {
  startFakeProvider,
  type AnthropicFakeProvider,
  type FakeProvider,
  type GroqFakeProvider,
  type OpenAiFakeProvider,
  type OpenRouterFakeProvider,
  type ValidBehaviour,
} from '../fake-providers';
import { apiToken, startTestApp, type TestApp } from '../support/test-app';

/**
 * Real client libraries, unchanged but for their base URL, through Keyward to the fake providers:
 * plain, streamed and tool calls, non-ASCII text split at every byte, and after each case the
 * usage API shows exactly what the fake reported (read back from its request log).

 */
jest.setTimeout(30_000);

describe('Clients through Keyward', () => {
  let t: TestApp;
  let base: string;
  let admin: string;
  let openai: OpenAiFakeProvider;
  let anthropic: AnthropicFakeProvider;
  let groq: GroqFakeProvider;
  let openrouter: OpenRouterFakeProvider;
  const auth = () => ({ Authorization: `Bearer ${admin}` });
  const JAPANESE = '日本語のテキスト 🎉';

  interface Lane {
    fake: FakeProvider;
    secret: string;
    keyId: string;
    token: string;
  }

  /** Only this key serves its provider, with distinctive counts, and a fresh token to call with. */
  async function lane(
    provider: 'openai' | 'anthropic' | 'groq' | 'openrouter',
    behaviour: Omit<ValidBehaviour, 'kind'>,
    tokenBody: Record<string, unknown> = {},
  ): Promise<Lane> {
    const fake = { openai, anthropic, groq, openrouter }[provider];
    const { body } = await request(t.http).get(`/api/admin/api-keys?provider=${provider}&active=true`).set(auth());
    for (const key of body.keys) {
      await request(t.http).post(`/api/admin/api-keys/${key.id}/revoke`).set(auth()).expect(200);
    }
    const secret = fake.generateKey({ kind: 'valid', ...behaviour });
    const created = await request(t.http)
      .post('/api/admin/api-keys')
      .set(auth())
      .send({ provider, name: `client-${Math.random()}`, key: secret });
    if (created.status !== 201) throw new Error(`key: ${created.status} ${JSON.stringify(created.body)}`);
    return { fake, secret, keyId: created.body.id, token: await accessToken(tokenBody) };
  }

  async function accessToken(body: Record<string, unknown> = {}): Promise<string> {
    const res = await request(t.http)
      .post('/api/admin/access-tokens')
      .set(auth())
      .send({ name: `app-${Math.random()}`, ...body });
    if (res.status !== 201) throw new Error(`token: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.token;
  }

  /**
   * A token granted the data groups. Until the gateway knows token scopes the field does not
   * exist and every token reaches them.
   */
  async function dataToken(): Promise<string> {
    const res = await request(t.http)
      .post('/api/admin/access-tokens')
      .set(auth())
      .send({ name: `data-${Math.random()}`, scopes: ['files', 'uploads', 'batches', 'vector_stores'] });
    return res.status === 201 ? res.body.token : accessToken();
  }

  /** The key's usage today equals the sum of what the fake reported to that key's calls. */
  async function expectUsageAsReported(l: Lane): Promise<void> {
    const mine = l.fake.requests.filter((r) => r.key === l.secret);
    const input = mine.reduce((sum, r) => sum + (r.reportedUsage?.input ?? 0), 0);
    const output = mine.reduce((sum, r) => sum + (r.reportedUsage?.output ?? 0), 0);
    const cost = mine.reduce((sum, r) => sum + (r.reportedUsage?.cost ?? 0), 0);
    let today: Record<string, number> | undefined;
    for (let i = 0; i < 40; i++) {
      await t.app.get(UsageRecorder).flush();
      const usage = await request(t.http).get(`/api/admin/api-keys/${l.keyId}/usage`).set(auth()).expect(200);
      today = usage.body.history.daily.at(-1);
      if ((today?.requests ?? 0) >= mine.length) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(mine.length).toBeGreaterThan(0);
    expect(today).toMatchObject({ requests: mine.length, inputTokens: input, outputTokens: output });
    if (l.fake.id === 'openrouter') expect(today!.cost).toBeCloseTo(cost, 12);
  }

  const weather = {
    description: 'The weather in a city',
    inputSchema: jsonSchema<{ city: string }>({
      type: 'object',
      properties: { city: { type: 'string' } },
      required: ['city'],
      additionalProperties: false,
    }),
  };
  const chatTool = {
    type: 'function' as const,
    function: {
      name: 'weather',
      description: 'The weather in a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    },
  };

  beforeAll(async () => {
    [openai, anthropic, groq, openrouter] = await Promise.all([
      startFakeProvider('openai', { chunkDelayMs: 1 }),
      startFakeProvider('anthropic', { chunkDelayMs: 1 }),
      startFakeProvider('groq', { chunkDelayMs: 1 }),
      startFakeProvider('openrouter', { chunkDelayMs: 1 }),
    ]);
    process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
    process.env.KEYWARD_PROVIDER_ANTHROPIC_BASE_URL = anthropic.baseUrl;
    process.env.KEYWARD_PROVIDER_GROQ_BASE_URL = groq.baseUrl;
    process.env.KEYWARD_PROVIDER_OPENROUTER_BASE_URL = openrouter.baseUrl;
    t = await startTestApp({ KEYWARD_USAGE_FLUSH_MS: '50' });
    await new Promise<void>((resolve) => t.app.getHttpServer().listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(t.app.getHttpServer().address() as AddressInfo).port}`;
    admin = await apiToken(t.http);
  });
  afterAll(async () => {
    await t.close();
    await Promise.all([openai.close(), anthropic.close(), groq.close(), openrouter.close()]);
    for (const id of ['OPENAI', 'ANTHROPIC', 'GROQ', 'OPENROUTER'])
      delete process.env[`KEYWARD_PROVIDER_${id}_BASE_URL`];
  });
  afterEach(() => {
    for (const fake of [openai, anthropic, groq, openrouter]) {
      fake.splitStream = undefined;
      fake.compressAnyway = undefined;
      fake.streamEndDelayMs = 0;
    }
  });

  // ---- openai ---------------------------------------------------------------------------------

  describe('openai', () => {
    const client = (l: Lane, path = '/proxy/openai/v1') =>
      new OpenAI({ apiKey: l.token, baseURL: `${base}${path}`, maxRetries: 0 });
    const messages = [{ role: 'user' as const, content: 'hi' }];

    it('chat: plain, streamed (usage chunk hidden), and tool calls both ways', async () => {
      const l = await lane('openai', { usage: { input: 31, output: 4, cached: 8 } });
      const c = client(l);
      const plain = await c.chat.completions.create({ model: 'gpt-5', messages });
      let text = '';
      for await (const chunk of await c.chat.completions.create({ model: 'gpt-5', messages, stream: true })) {
        text += chunk.choices[0]?.delta?.content ?? '';
      }
      const called = await c.chat.completions.create({ model: 'gpt-5', messages, tools: [chatTool] });
      let streamedArguments = '';
      for await (const chunk of await c.chat.completions.create({
        model: 'gpt-5',
        messages,
        tools: [chatTool],
        stream: true,
      })) {
        streamedArguments += chunk.choices[0]?.delta?.tool_calls?.[0]?.function?.arguments ?? '';
      }

      expect(plain.usage).toMatchObject({ prompt_tokens: 31, completion_tokens: 4 });
      expect(text).toBe('Hello from fake OpenAI');
      expect(called.choices[0].message.tool_calls?.[0]).toMatchObject({
        function: { name: 'weather', arguments: '{"city":"Paris"}' },
      });
      expect(JSON.parse(streamedArguments)).toEqual({ city: 'Paris' });
      await expectUsageAsReported(l);
    });

    it('responses: plain, streamed and a tool call', async () => {
      const l = await lane('openai', { usage: { input: 57, output: 13 } });
      const c = client(l);
      const plain = await c.responses.create({ model: 'gpt-5', input: 'hi' });
      let text = '';
      for await (const event of await c.responses.create({ model: 'gpt-5', input: 'hi', stream: true })) {
        if (event.type === 'response.output_text.delta') text += event.delta;
      }
      const called = await c.responses.create({
        model: 'gpt-5',
        input: 'weather?',
        tools: [{ type: 'function', name: 'weather', parameters: chatTool.function.parameters, strict: false }],
      });

      expect(plain.output_text).toBe('Hello from fake OpenAI');
      expect(plain.usage).toMatchObject({ input_tokens: 57, output_tokens: 13 });
      expect(text).toBe('Hello from fake OpenAI');
      expect(called.output[0]).toMatchObject({ type: 'function_call', name: 'weather' });
      await expectUsageAsReported(l);
    });

    it.each(['incomplete', 'failed'] as const)(
      'responses streams ending in response.%s are counted',
      async (ending) => {
        const l = await lane('openai', { usage: { input: 71, output: 19 }, responseEnding: ending });
        const events: string[] = [];
        for await (const event of await client(l).responses.create({ model: 'gpt-5', input: 'hi', stream: true })) {
          events.push(event.type);
        }

        expect(events.at(-1)).toBe(`response.${ending}`);
        await expectUsageAsReported(l);
      },
    );

    it('embeddings, moderations, images and an audio transcription (multipart)', async () => {
      const l = await lane('openai', { usage: { input: 23, output: 6 } });
      const c = client(l);
      const embedded = await c.embeddings.create({ model: 'text-embedding-3-small', input: 'hi' });
      const moderated = await c.moderations.create({ model: 'omni-moderation-latest', input: 'hi' });
      const image = await c.images.generate({ model: 'gpt-image-1', prompt: 'a cat' });
      const transcript = await c.audio.transcriptions.create({
        model: 'gpt-4o-transcribe',
        file: await toFile(Buffer.alloc(4000, 1), 'hello.wav', { type: 'audio/wav' }),
      });

      expect(embedded.data[0].embedding).toHaveLength(8);
      expect(moderated.results[0].flagged).toBe(false);
      expect(image.data?.[0].b64_json).toEqual(expect.any(String));
      expect(transcript.text).toBe('Hello from fake OpenAI');
      expect(openai.requests.at(-1)!.body).toMatchObject({ model: 'gpt-4o-transcribe', file: { bytes: 4000 } });
      await expectUsageAsReported(l);
    });

    it('files (upload, list, retrieve) and batches, counted as requests with 0 tokens', async () => {
      const l = await lane('openai', { usage: { input: 5, output: 5 } });
      l.token = await dataToken();
      const c = client(l);
      const file = await c.files.create({ file: await toFile(Buffer.from('{"a":1}\n'), 'in.jsonl'), purpose: 'batch' });
      const listed = await c.files.list();
      const retrieved = await c.files.retrieve(file.id);
      const batch = await c.batches.create({
        input_file_id: file.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      });
      const again = await c.batches.retrieve(batch.id);

      expect(listed.data.map((f) => f.id)).toContain(file.id);
      expect(retrieved).toMatchObject({ id: file.id, bytes: 8, purpose: 'batch' });
      expect(again).toMatchObject({ id: batch.id, status: 'validating' });
      await expectUsageAsReported(l);
    });
    it('chat.completions.retrieve and responses.retrieve are not counted as new usage', async () => {
      const l = await lane('openai', { usage: { input: 41, output: 9 } });
      const c = client(l);
      const completion = await c.chat.completions.create({ model: 'gpt-5', messages, store: true });
      const response = await c.responses.create({ model: 'gpt-5', input: 'hi' });
      const retrievedCompletion = await c.chat.completions.retrieve(completion.id);
      const retrievedResponse = await c.responses.retrieve(response.id);

      expect(retrievedCompletion.id).toBe(completion.id);
      expect(retrievedResponse.id).toBe(response.id);
      await expectUsageAsReported(l);
    });

    it('a non-ASCII stream split at every byte arrives whole when the client asked for usage', async () => {
      const l = await lane('openai', { usage: { input: 17, output: 3 }, reply: JAPANESE });
      openai.splitStream = { mode: 'every-byte' };
      let text = '';
      for await (const chunk of await client(l).chat.completions.create({
        model: 'gpt-5',
        messages,
        stream: true,
        stream_options: { include_usage: true },
      })) {
        text += chunk.choices[0]?.delta?.content ?? '';
      }

      expect(text).toBe(JAPANESE);
      await expectUsageAsReported(l);
    });
    it('a non-ASCII stream split at every byte arrives whole when Keyward hides its usage chunk', async () => {
      const l = await lane('openai', { usage: { input: 17, output: 3 }, reply: JAPANESE });
      openai.splitStream = { mode: 'every-byte' };
      let text = '';
      for await (const chunk of await client(l).chat.completions.create({ model: 'gpt-5', messages, stream: true })) {
        text += chunk.choices[0]?.delta?.content ?? '';
      }

      expect(text).toBe(JAPANESE);
      await expectUsageAsReported(l);
    });

    it('a Responses stream cut into pieces of 1 to 3 bytes arrives whole', async () => {
      const l = await lane('openai', { usage: { input: 19, output: 3 }, reply: JAPANESE });
      // Responses events are long (each repeats the response object): pieces, not single bytes.
      openai.splitStream = { mode: 'random', seed: 7, maxSize: 3 };
      let text = '';
      for await (const event of await client(l).responses.create({ model: 'gpt-5', input: 'hi', stream: true })) {
        if (event.type === 'response.output_text.delta') text += event.delta;
      }

      expect(text).toBe(JAPANESE);
      await expectUsageAsReported(l);
    });
    it('an upstream that answers gzip anyway is relayed intact and still counted', async () => {
      const l = await lane('openai', { usage: { input: 29, output: 7 } });
      openai.compressAnyway = 'gzip';
      const c = client(l);
      const plain = await c.chat.completions.create({ model: 'gpt-5', messages });
      let text = '';
      for await (const chunk of await c.chat.completions.create({
        model: 'gpt-5',
        messages,
        stream: true,
        stream_options: { include_usage: true },
      })) {
        text += chunk.choices[0]?.delta?.content ?? '';
      }

      // The variant where Keyward hides its own usage chunk broke the client (`TypeError: terminated`).
      let hidden = '';
      for await (const chunk of await c.chat.completions.create({ model: 'gpt-5', messages, stream: true })) {
        hidden += chunk.choices[0]?.delta?.content ?? '';
      }

      expect(plain.choices[0].message.content).toBe('Hello from fake OpenAI');
      expect(text).toBe('Hello from fake OpenAI');
      expect(hidden).toBe('Hello from fake OpenAI');
      await expectUsageAsReported(l);
    });

    it('the /v1 entry serves chat to the SDK by model name', async () => {
      const l = await lane('openai', { usage: { input: 11, output: 2 } });
      const answer = await client(l, '/v1').chat.completions.create({ model: 'gpt-5', messages });

      expect(answer.usage).toMatchObject({ prompt_tokens: 11, completion_tokens: 2 });
      await expectUsageAsReported(l);
    });
    it('the /v1 entry serves responses and embeddings by model name', async () => {
      const l = await lane('openai', { usage: { input: 13, output: 2 } });
      const c = client(l, '/v1');
      const response = await c.responses.create({ model: 'gpt-5', input: 'hi' });
      const embedded = await c.embeddings.create({ model: 'text-embedding-3-small', input: 'hi' });

      expect(response.output_text).toBe('Hello from fake OpenAI');
      expect(embedded.data).toHaveLength(1);
      await expectUsageAsReported(l);
    });
    it('the /v1 entry sends openai/gpt-oss-120b, a model the Groq plugin lists, to Groq', async () => {
      await lane('openai', {});
      const l = await lane('groq', { usage: { input: 15, output: 2 } });
      const answer = await client(l, '/v1').chat.completions.create({ model: 'openai/gpt-oss-120b', messages });

      expect(answer.usage).toMatchObject({ prompt_tokens: 15 });
      await expectUsageAsReported(l);
    });
    it('records streams the SDK closes on [DONE] as successes', async () => {
      const l = await lane('openai', { usage: { input: 9, output: 4 } });
      // The provider's end of body comes 50 ms after [DONE]; the SDK has closed by then.
      openai.streamEndDelayMs = 50;
      const c = client(l);
      for (let i = 0; i < 5; i++) {
        for await (const chunk of await c.chat.completions.create({ model: 'gpt-5', messages, stream: true })) {
          void chunk;
        }
      }

      await expectUsageAsReported(l);
      const usage = await request(t.http).get(`/api/admin/api-keys/${l.keyId}/usage`).set(auth()).expect(200);
      expect(usage.body.history.daily.at(-1)).toMatchObject({ requests: 5, errors: 0 });
    });

    it('never forwards the organisation API', async () => {
      const l = await lane('openai', {});
      const c = client(l);
      await expect(c.get('/organization/users')).rejects.toMatchObject({ status: 404 });

      expect(openai.organizationRequests).toEqual([]);
    });
  });

  // ---- @anthropic-ai/sdk ----------------------------------------------------------------------

  describe('@anthropic-ai/sdk', () => {
    const client = (l: Lane) => new Anthropic({ apiKey: l.token, baseURL: `${base}/proxy/anthropic`, maxRetries: 0 });
    const params = {
      model: 'claude-haiku-4-5',
      max_tokens: 64,
      messages: [{ role: 'user' as const, content: 'hi' }],
    };

    it('messages: plain, streamed split at every byte, and a tool call', async () => {
      const l = await lane('anthropic', { usage: { input: 43, output: 8, cached: 11 }, reply: JAPANESE });
      const c = client(l);
      const plain = await c.messages.create(params);
      anthropic.splitStream = { mode: 'every-byte' };
      const stream = c.messages.stream(params);
      let text = '';
      stream.on('text', (delta) => (text += delta));
      const final = await stream.finalMessage();
      anthropic.splitStream = undefined;
      const called = await c.messages.create({
        ...params,
        tools: [{ name: 'weather', input_schema: { type: 'object', properties: { city: { type: 'string' } } } }],
      });

      expect(plain.usage).toMatchObject({ input_tokens: 32, cache_read_input_tokens: 11, output_tokens: 8 });
      expect(text).toBe(JAPANESE);
      expect(final.usage.output_tokens).toBe(8);
      expect(called.content[0]).toMatchObject({ type: 'tool_use', name: 'weather', input: { city: 'Paris' } });
      await expectUsageAsReported(l);
    });

    it('count_tokens and message batches are requests with 0 tokens', async () => {
      const l = await lane('anthropic', { usage: { input: 97, output: 1 } });
      l.token = await dataToken();
      const c = client(l);
      const counted = await c.messages.countTokens({ model: params.model, messages: params.messages });
      const batch = await c.messages.batches.create({ requests: [{ custom_id: 'one', params }] });
      const retrieved = await c.messages.batches.retrieve(batch.id);
      const listed = [];
      for await (const item of c.messages.batches.list()) listed.push(item.id);

      expect(counted.input_tokens).toBe(97);
      expect(retrieved).toMatchObject({ id: batch.id, processing_status: 'in_progress' });
      expect(listed).toContain(batch.id);
      await expectUsageAsReported(l);
    });
  });

  // ---- groq-sdk -------------------------------------------------------------------------------

  describe('groq-sdk', () => {
    it('chat: plain, streamed (x_groq.usage) and a tool call, with base URL /proxy/groq', async () => {
      const l = await lane('groq', { usage: { input: 37, output: 5 }, reply: JAPANESE });
      const c = new Groq({ apiKey: l.token, baseURL: `${base}/proxy/groq`, maxRetries: 0 });
      const messages = [{ role: 'user' as const, content: 'hi' }];
      const plain = await c.chat.completions.create({ model: 'llama-3.1-8b-instant', messages });
      groq.splitStream = { mode: 'every-byte' };
      let text = '';
      for await (const chunk of await c.chat.completions.create({
        model: 'llama-3.1-8b-instant',
        messages,
        stream: true,
      })) {
        text += chunk.choices[0]?.delta?.content ?? '';
      }
      groq.splitStream = undefined;
      const called = await c.chat.completions.create({ model: 'llama-3.1-8b-instant', messages, tools: [chatTool] });

      expect(plain.usage).toMatchObject({ prompt_tokens: 37, completion_tokens: 5 });
      expect(text).toBe(JAPANESE);
      expect(called.choices[0].message.tool_calls?.[0].function.name).toBe('weather');
      await expectUsageAsReported(l);
    });
  });

  // ---- the AI SDK -----------------------------------------------------------------------------

  describe('ai with its providers', () => {
    async function exercise(model: LanguageModel, expectedText: string): Promise<void> {
      const plain = await generateText({ model, prompt: 'hi' });
      const streamed = streamText({ model, prompt: 'hi' });
      let text = '';
      for await (const delta of streamed.textStream) text += delta;
      const called = await generateText({ model, prompt: 'weather in Paris?', tools: { weather: tool(weather) } });

      expect(plain.text).toBe(expectedText);
      expect(text).toBe(expectedText);
      expect(called.toolCalls[0]).toMatchObject({ toolName: 'weather', input: { city: 'Paris' } });
    }

    it('@ai-sdk/openai openai(...) on the Responses API', async () => {
      const l = await lane('openai', { usage: { input: 61, output: 7 } });
      const provider = createOpenAI({ apiKey: l.token, baseURL: `${base}/proxy/openai/v1` });
      await exercise(provider('gpt-5'), 'Hello from fake OpenAI');

      expect(openai.requests.filter((r) => r.key === l.secret).every((r) => r.path === '/v1/responses')).toBe(true);
      await expectUsageAsReported(l);
    });

    it('@ai-sdk/openai openai.chat(...) on Chat Completions', async () => {
      const l = await lane('openai', { usage: { input: 63, output: 8 } });
      const provider = createOpenAI({ apiKey: l.token, baseURL: `${base}/proxy/openai/v1` });
      await exercise(provider.chat('gpt-5'), 'Hello from fake OpenAI');

      expect(openai.requests.filter((r) => r.key === l.secret).every((r) => r.path === '/v1/chat/completions')).toBe(
        true,
      );
      await expectUsageAsReported(l);
    });

    it('@ai-sdk/anthropic with base URL /proxy/anthropic/v1', async () => {
      const l = await lane('anthropic', { usage: { input: 65, output: 9, cached: 4 } });
      const provider = createAnthropic({ apiKey: l.token, baseURL: `${base}/proxy/anthropic/v1` });
      await exercise(provider('claude-haiku-4-5'), 'Hello from fake Anthropic');
      await expectUsageAsReported(l);
    });

    it('@ai-sdk/groq with base URL /proxy/groq/openai/v1', async () => {
      const l = await lane('groq', { usage: { input: 67, output: 10 } });
      const provider = createGroq({ apiKey: l.token, baseURL: `${base}/proxy/groq/openai/v1` });
      await exercise(provider('llama-3.1-8b-instant'), 'Hello from fake Groq');
      await expectUsageAsReported(l);
    });

    it("@openrouter/ai-sdk-provider, with OpenRouter's own cost recorded", async () => {
      const l = await lane('openrouter', { usage: { input: 69, output: 11, cost: 0.000417 } });
      const provider = createOpenRouter({ apiKey: l.token, baseURL: `${base}/proxy/openrouter/api/v1` });
      await exercise(provider('openai/gpt-4o-mini'), 'Hello from fake OpenRouter');
      await expectUsageAsReported(l);
    });
  });

  // ---- LangChain ------------------------------------------------------------------------------

  describe('LangChain', () => {
    it('@langchain/openai ChatOpenAI: invoke, stream and a bound tool', async () => {
      const l = await lane('openai', { usage: { input: 73, output: 12 } });
      const model = new ChatOpenAI({
        model: 'gpt-5',
        apiKey: l.token,
        configuration: { baseURL: `${base}/proxy/openai/v1` },
        maxRetries: 0,
      });
      const plain = await model.invoke('hi');
      let text = '';
      for await (const chunk of await model.stream('hi')) text += String(chunk.content);
      const called = await model.bindTools([chatTool]).invoke('weather in Paris?');

      expect(plain.content).toBe('Hello from fake OpenAI');
      expect(text).toBe('Hello from fake OpenAI');
      expect(called.tool_calls?.[0]).toMatchObject({ name: 'weather', args: { city: 'Paris' } });
      await expectUsageAsReported(l);
    });

    it('@langchain/anthropic ChatAnthropic: invoke and stream', async () => {
      const l = await lane('anthropic', { usage: { input: 75, output: 13 } });
      const model = new ChatAnthropic({
        model: 'claude-haiku-4-5',
        apiKey: l.token,
        anthropicApiUrl: `${base}/proxy/anthropic`,
        maxRetries: 0,
        maxTokens: 64,
      });
      const plain = await model.invoke('hi');
      let text = '';
      for await (const chunk of await model.stream('hi')) text += String(chunk.content);

      expect(plain.content).toBe('Hello from fake Anthropic');
      expect(text).toBe('Hello from fake Anthropic');
      await expectUsageAsReported(l);
    });
  });
});
