import { createPlugin as anthropicPlugin } from '../../plugins/anthropic';
import { createPlugin as groqPlugin } from '../../plugins/groq';
import { createPlugin as openaiPlugin } from '../../plugins/openai';
import { createPlugin as openrouterPlugin } from '../../plugins/openrouter';
import type { ProviderPlugin, UsageCount } from '../../src/plugin-system/provider-plugin';
import { sseEvents } from './plugin-test-kit';
import { startFakeProvider, type FakeProvider, type ReportedUsage } from './index';
import { matchEndpoint, sendThroughPlugin, usageOfAnswer, type PluginCall } from './plugin-test-kit';

/** What the gateway should record for what the fake reported. */
function recorded(reported: ReportedUsage): Partial<UsageCount> {
  return {
    inputTokens: reported.input,
    outputTokens: reported.output,
    totalTokens: reported.input + reported.output,
    ...(reported.cached > 0 ? { cachedInputTokens: reported.cached } : {}),
    ...(reported.cost !== undefined ? { costUsd: reported.cost } : {}),
  };
}

const ZERO = { inputTokens: 0, outputTokens: 0, totalTokens: 0 };

function audioForm(model: string, extra: Record<string, string> = {}): FormData {
  const form = new FormData();
  form.append('file', new Blob([Buffer.alloc(2500, 1)], { type: 'audio/wav' }), 'hello.wav');
  form.append('model', model);
  for (const [name, value] of Object.entries(extra)) form.append(name, value);
  return form;
}

function fileForm(purpose: string, text = '{"custom_id":"1"}\n'): FormData {
  const form = new FormData();
  form.append('file', new Blob([text], { type: 'application/jsonl' }), 'input.jsonl');
  if (purpose) form.append('purpose', purpose);
  return form;
}

interface Harness {
  fake: FakeProvider;
  plugin: ProviderPlugin;
  key: string;
  /** Sends through the plugin, reads usage as the gateway would; returns both. */
  call(call: PluginCall): Promise<{ status: number; usage: UsageCount | undefined; json: unknown; bytes: Buffer }>;
}

async function harness(
  id: 'openai' | 'anthropic' | 'groq' | 'openrouter',
  usage: { input: number; output: number; cached?: number; cost?: number },
): Promise<Harness> {
  const fake = await startFakeProvider(id, { chunkDelayMs: 0 });
  const factories = {
    openai: openaiPlugin,
    anthropic: anthropicPlugin,
    groq: groqPlugin,
    openrouter: openrouterPlugin,
  };
  const plugin = factories[id]({ baseUrl: fake.baseUrl });
  const h: Harness = {
    fake,
    plugin,
    key: fake.generateKey({ kind: 'valid', usage, reply: '日本語のテキスト 🎉 and more' }),
    async call(call) {
      const answer = await sendThroughPlugin(plugin, h.key, call);
      const method = call.method ?? (call.json !== undefined || call.form ? 'POST' : 'GET');
      const endpoint = matchEndpoint(plugin, method, call.path);
      if (!endpoint) throw new Error(`${method} ${call.path} is not in the ${id} plugin's routes`);
      const counted = await usageOfAnswer(plugin, answer, endpoint, {
        requestBody: call.json,
        seed: answer.bytes.length,
      });
      return { status: answer.status, usage: counted, json: answer.json, bytes: answer.bytes };
    },
  };
  return h;
}

const lastReported = (fake: FakeProvider): ReportedUsage => fake.requests.at(-1)!.reportedUsage!;

describe('usage on every endpoint, OpenAI', () => {
  let h: Harness;
  beforeAll(async () => (h = await harness('openai', { input: 123, output: 45, cached: 6 })));
  afterAll(() => h.fake.close());
  beforeEach(() => {
    h.fake.compressAnyway = undefined;
    h.fake.splitStream = undefined;
  });
  const messages = [{ role: 'user', content: 'hi' }];

  it.each([
    ['chat', { path: '/chat/completions', json: { model: 'gpt-5', messages } }],
    [
      'chat, streamed',
      {
        path: '/chat/completions',
        json: { model: 'gpt-5', messages, stream: true, stream_options: { include_usage: true } },
      },
    ],
    ['completions', { path: '/completions', json: { model: 'gpt-5', prompt: 'hi' } }],
    [
      'completions, streamed',
      {
        path: '/completions',
        json: { model: 'gpt-5', prompt: 'hi', stream: true, stream_options: { include_usage: true } },
      },
    ],
    ['responses', { path: '/responses', json: { model: 'gpt-5', input: 'hi' } }],
    ['responses, streamed', { path: '/responses', json: { model: 'gpt-5', input: 'hi', stream: true } }],
    [
      'chat with a tool call, streamed',
      {
        path: '/chat/completions',
        json: {
          model: 'gpt-5',
          messages,
          stream: true,
          stream_options: { include_usage: true },
          tools: [{ type: 'function', function: { name: 'weather', parameters: { type: 'object', properties: {} } } }],
        },
      },
    ],
    ['images (gpt-image-1)', { path: '/images/generations', json: { model: 'gpt-image-1', prompt: 'a cat' } }],
  ] as [string, PluginCall][])('%s: counts exactly what the fake reported', async (_name, call) => {
    const answer = await h.call(call);

    expect(answer.status).toBe(200);
    expect(answer.usage).toMatchObject(recorded(lastReported(h.fake)));
    expect(answer.usage).toMatchObject({ inputTokens: 123, outputTokens: 45 });
  });

  it.each(['incomplete', 'failed'] as const)(
    'responses ending in response.%s still count their usage, streamed and not',
    async (ending) => {
      const key = h.key;
      h.key = h.fake.generateKey({ kind: 'valid', usage: { input: 321, output: 54 }, responseEnding: ending });
      try {
        const streamed = await h.call({ path: '/responses', json: { model: 'gpt-5', input: 'hi', stream: true } });
        const plain = await h.call({ path: '/responses', json: { model: 'gpt-5', input: 'hi' } });

        expect(sseEvents(streamed.bytes).at(-1)?.event).toBe(`response.${ending}`);
        expect(streamed.usage).toMatchObject({ inputTokens: 321, outputTokens: 54 });
        expect(plain.json).toMatchObject({ status: ending });
        expect(plain.usage).toMatchObject({ inputTokens: 321, outputTokens: 54 });
      } finally {
        h.key = key;
      }
    },
  );

  it('embeddings count their input tokens', async () => {
    const answer = await h.call({ path: '/embeddings', json: { model: 'text-embedding-3-small', input: 'hi' } });

    expect(answer.usage).toMatchObject({ inputTokens: 123, outputTokens: 0 });
  });

  it('moderations are one request with 0 tokens', async () => {
    const answer = await h.call({ path: '/moderations', json: { model: 'omni-moderation-latest', input: 'hi' } });

    expect(answer.json).toMatchObject({ results: [{ flagged: false }] });
    expect(answer.usage).toMatchObject(ZERO);
  });

  it('DALL·E images count one output unit per image', async () => {
    const answer = await h.call({ path: '/images/generations', json: { model: 'dall-e-3', prompt: 'a cat', n: 2 } });

    expect(answer.usage).toMatchObject({ inputTokens: 0, outputTokens: 2 });
  });

  it('image edits arrive as multipart and count the gpt-image usage', async () => {
    const form = new FormData();
    form.append('image', new Blob([Buffer.alloc(64, 7)], { type: 'image/png' }), 'cat.png');
    form.append('prompt', 'add a hat');
    form.append('model', 'gpt-image-1');
    const answer = await h.call({ path: '/images/edits', form });

    expect(answer.status).toBe(200);
    expect(h.fake.requests.at(-1)!.body).toMatchObject({ model: 'gpt-image-1', image: { bytes: 64 } });
    expect(answer.usage).toMatchObject({ inputTokens: 123, outputTokens: 45 });
  });

  it('transcriptions: gpt-4o-transcribe counts tokens, whisper-1 the seconds of audio', async () => {
    const tokens = await h.call({ path: '/audio/transcriptions', form: audioForm('gpt-4o-transcribe') });
    const seconds = await h.call({ path: '/audio/translations', form: audioForm('whisper-1') });

    expect(tokens.usage).toMatchObject({ inputTokens: 123, outputTokens: 45 });
    expect(seconds.json).toMatchObject({ usage: { type: 'duration', seconds: 3 } });
    expect(seconds.usage).toMatchObject({ inputTokens: 3, outputTokens: 0 });
  });

  it('speech answers audio bytes; tts-1 counts the characters of the input', async () => {
    const answer = await h.call({
      path: '/audio/speech',
      json: { model: 'tts-1', input: 'Grüß dich 🎉', voice: 'alloy' },
    });

    expect(answer.bytes.subarray(0, 3).toString('latin1')).toBe('ID3');
    expect(answer.usage).toMatchObject({ inputTokens: 11, outputTokens: 0, model: 'tts-1' });
  });

  it('reading back a stored completion or response is a request with 0 tokens', async () => {
    const chat = await h.call({ path: '/chat/completions', json: { model: 'gpt-5', messages } });
    const response = await h.call({ path: '/responses', json: { model: 'gpt-5', input: 'hi' } });
    const chatId = (chat.json as { id: string }).id;
    const responseId = (response.json as { id: string }).id;

    const retrievedChat = await h.call({ path: `/chat/completions/${chatId}` });
    const retrievedResponse = await h.call({ path: `/responses/${responseId}` });

    // The bodies repeat the usage; counting it again would bill the call twice.
    expect(retrievedChat.json).toMatchObject({ id: chatId, usage: { prompt_tokens: 123 } });
    expect(retrievedChat.usage).toMatchObject(ZERO);
    expect(retrievedResponse.json).toMatchObject({ id: responseId, usage: { input_tokens: 123 } });
    expect(retrievedResponse.usage).toMatchObject(ZERO);
  });

  it('files, batches, uploads and vector stores work and count 0 tokens', async () => {
    const file = await h.call({ path: '/files', form: fileForm('batch') });
    const fileId = (file.json as { id: string }).id;
    const listed = await h.call({ path: '/files' });
    const content = await h.call({ path: `/files/${fileId}/content` });
    const batch = await h.call({
      path: '/batches',
      json: { input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h' },
    });
    const batchId = (batch.json as { id: string }).id;
    const retrievedBatch = await h.call({ path: `/batches/${batchId}` });
    const upload = await h.call({
      path: '/uploads',
      json: { filename: 'a.jsonl', purpose: 'batch', bytes: 5, mime_type: 'text/jsonl' },
    });
    const uploadId = (upload.json as { id: string }).id;
    const part = new FormData();
    part.append('data', new Blob(['hello']), 'part');
    const uploadedPart = await h.call({ path: `/uploads/${uploadId}/parts`, form: part });
    const completed = await h.call({
      path: `/uploads/${uploadId}/complete`,
      json: { part_ids: [(uploadedPart.json as { id: string }).id] },
    });
    const store = await h.call({ path: '/vector_stores', json: { name: 'docs', file_ids: [fileId] } });
    const storeId = (store.json as { id: string }).id;
    const search = await h.call({ path: `/vector_stores/${storeId}/search`, json: { query: 'cats' } });
    const deleted = await h.call({ method: 'DELETE', path: `/files/${fileId}` });

    expect(file.json).toMatchObject({ object: 'file', purpose: 'batch', bytes: 18 });
    expect(listed.json).toMatchObject({ data: [{ id: fileId }] });
    expect(content.bytes.toString()).toBe('{"custom_id":"1"}\n');
    expect(retrievedBatch.json).toMatchObject({ id: batchId, status: 'validating' });
    expect(completed.json).toMatchObject({ status: 'completed', file: { bytes: 5 } });
    expect(search.json).toMatchObject({ object: 'vector_store.search_results.page', search_query: ['cats'] });
    expect(deleted.json).toMatchObject({ id: fileId, deleted: true });
    for (const answer of [
      file,
      listed,
      batch,
      retrievedBatch,
      upload,
      uploadedPart,
      completed,
      store,
      search,
      deleted,
    ]) {
      expect(answer.usage ?? ZERO).toMatchObject(ZERO);
    }
  });

  it.each(['gzip', 'deflate', 'br'] as const)(
    'a %s answer the client did not ask for is still counted (JSON and stream)',
    async (coding) => {
      h.fake.compressAnyway = coding;
      const plain = await h.call({ path: '/chat/completions', json: { model: 'gpt-5', messages } });
      const streamed = await h.call({ path: '/responses', json: { model: 'gpt-5', input: 'hi', stream: true } });

      expect(h.fake.requests.at(-1)!.headers['accept-encoding']).toBe('identity');
      expect(plain.usage).toMatchObject({ inputTokens: 123, outputTokens: 45 });
      expect(streamed.usage).toMatchObject({ inputTokens: 123, outputTokens: 45 });
    },
  );

  it('splits a stream at every byte on request, and the text survives', async () => {
    h.fake.splitStream = { mode: 'every-byte' };
    const answer = await h.call({
      path: '/chat/completions',
      json: { model: 'gpt-5', messages, stream: true, stream_options: { include_usage: true } },
    });
    const text = sseEvents(answer.bytes)
      .filter((event) => event.data.startsWith('{'))
      .map(
        (event) =>
          (JSON.parse(event.data) as { choices: { delta?: { content?: string } }[] }).choices[0]?.delta?.content ?? '',
      )
      .join('');

    expect(text).toBe('日本語のテキスト 🎉 and more');
    expect(answer.usage).toMatchObject({ inputTokens: 123, outputTokens: 45 });
  });

  it('records every request that reaches the organisation API', async () => {
    await h.call({ path: '/models' });
    expect(h.fake.organizationRequests).toHaveLength(0);

    await sendThroughPlugin(h.plugin, h.key, { path: '/organization/users' });

    expect(h.fake.organizationRequests.map((r) => r.path)).toEqual(['/v1/organization/users']);
  });
});

describe('usage on every endpoint, Anthropic', () => {
  let h: Harness;
  beforeAll(async () => (h = await harness('anthropic', { input: 77, output: 12, cached: 5 })));
  afterAll(() => h.fake.close());
  const body = { model: 'claude-haiku-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] };

  it.each([
    ['messages', { path: '/v1/messages', json: body }],
    ['messages, streamed', { path: '/v1/messages', json: { ...body, stream: true } }],
    [
      'messages with a tool call, streamed',
      {
        path: '/v1/messages',
        json: { ...body, stream: true, tools: [{ name: 'weather', input_schema: { type: 'object', properties: {} } }] },
      },
    ],
  ] as [string, PluginCall][])('%s: counts input with cache reads and the final output', async (_name, call) => {
    const answer = await h.call(call);

    expect(answer.usage).toMatchObject({ inputTokens: 77, outputTokens: 12, cachedInputTokens: 5 });
  });

  it('count_tokens, batches and files are requests with 0 tokens', async () => {
    const counted = await h.call({ path: '/v1/messages/count_tokens', json: body });
    const batch = await h.call({
      path: '/v1/messages/batches',
      json: { requests: [{ custom_id: 'a', params: body }] },
    });
    const batchId = (batch.json as { id: string }).id;
    const results = await h.call({ path: `/v1/messages/batches/${batchId}/results` });
    const file = await h.call({ path: '/v1/files', form: fileForm('') });

    expect(counted.json).toEqual({ input_tokens: 77 });
    expect(counted.usage).toMatchObject(ZERO);
    expect(batch.json).toMatchObject({ type: 'message_batch', processing_status: 'in_progress' });
    expect(batch.usage).toMatchObject(ZERO);
    expect(results.bytes.toString()).toContain('"custom_id":"a"');
    expect(file.json).toMatchObject({ type: 'file', size_bytes: 18 });
    expect(file.usage).toMatchObject(ZERO);
  });
});

describe('usage on every endpoint, Groq and OpenRouter', () => {
  let groq: Harness;
  let openrouter: Harness;
  beforeAll(async () => {
    groq = await harness('groq', { input: 61, output: 9 });
    openrouter = await harness('openrouter', { input: 88, output: 14, cost: 0.000321 });
  });
  afterAll(async () => {
    await groq.fake.close();
    await openrouter.fake.close();
  });
  const messages = [{ role: 'user', content: 'hi' }];

  it('Groq: x_groq.usage of a stream, the Responses API, and transcriptions as 0 tokens', async () => {
    const streamed = await groq.call({
      path: '/chat/completions',
      json: { model: 'llama-3.1-8b-instant', messages, stream: true },
    });
    const responses = await groq.call({
      path: '/responses',
      json: { model: 'llama-3.1-8b-instant', input: 'hi', stream: true },
    });
    const transcript = await groq.call({ path: '/audio/transcriptions', form: audioForm('whisper-large-v3') });

    expect(streamed.usage).toMatchObject({ inputTokens: 61, outputTokens: 9 });
    expect(responses.usage).toMatchObject({ inputTokens: 61, outputTokens: 9 });
    expect(transcript.json).toMatchObject({ text: expect.any(String) });
    expect(transcript.usage).toMatchObject(ZERO);
  });

  it("OpenRouter: the provider's own cost wins, on chat, completions and responses", async () => {
    for (const call of [
      { path: '/chat/completions', json: { model: 'openai/gpt-4o-mini', messages, stream: true } },
      { path: '/completions', json: { model: 'openai/gpt-4o-mini', prompt: 'hi' } },
      { path: '/responses', json: { model: 'openai/gpt-4o-mini', input: 'hi', stream: true } },
    ]) {
      const answer = await openrouter.call(call);

      expect(answer.usage).toMatchObject({ inputTokens: 88, outputTokens: 14, costUsd: 0.000321 });
    }
    const generation = await openrouter.call({ path: '/generation?id=gen-1' });
    expect(generation.usage).toMatchObject(ZERO);
  });
});
