import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { cutInto, toolCallFor, type ToolCall } from './openai-compatible';
import {
  contentTexts,
  ErrorBehaviour,
  FakeProvider,
  FakeProviderOptions,
  isRecord,
  KeyBehaviour,
  randomString,
  ReportedUsage,
  RequestContext,
  ValidBehaviour,
} from './fake-provider';

export const ANTHROPIC_DEFAULT_MODELS = ['claude-sonnet-4-5', 'claude-haiku-4-5', 'claude-opus-4-5'];

const KEY_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';

/** `sk-ant-api03-` + 93 characters + `AA`, as the secret scanners describe Anthropic keys. */
export function generateAnthropicKey(kind: 'api03' | 'admin01' = 'api03'): string {
  return `sk-ant-${kind}-${randomString(93, KEY_ALPHABET)}AA`;
}

interface AnthropicError {
  status: number;
  type: string;
  message: string;
  headers?: Record<string, string>;
}

export interface AnthropicApiKeyRecord {
  id: string;
  key: string;
  name: string;
  status: 'active' | 'inactive' | 'archived';
  createdAt: string;
}

const DEFAULT_RETRY_AFTER_SECONDS = 20;
const RATE_LIMITS = { requests: 4000, inputTokens: 2_000_000, outputTokens: 400_000 };
const ORGANIZATION_ID = '00000000-0000-4000-8000-00000000fa4e';

/**
 * Anthropic's Messages API: `x-api-key` auth, a required `anthropic-version`, typed error bodies,
 * named SSE events and the admin API's key status switch.
 */
export class AnthropicFakeProvider extends FakeProvider {
  readonly id = 'anthropic' as const;
  protected readonly displayName = 'Anthropic';
  private adminKey: string | undefined;
  private readonly apiKeys = new Map<string, AnthropicApiKeyRecord>();

  constructor(options: FakeProviderOptions = {}) {
    super(options, ANTHROPIC_DEFAULT_MODELS);
  }

  static start(options?: FakeProviderOptions): Promise<AnthropicFakeProvider> {
    return new AnthropicFakeProvider(options).start();
  }

  /** Anthropic's paths carry the `/v1` themselves. */
  get baseUrl(): string {
    return this.origin;
  }

  override reset(): void {
    super.reset();
    this.batches.clear();
    this.files.clear();
    this.adminKey = undefined;
    this.apiKeys.clear();
  }

  /** An admin key (`sk-ant-admin01-…`) that may call /v1/organizations/*. */
  generateAdminKey(): string {
    this.adminKey = generateAnthropicKey('admin01');
    return this.adminKey;
  }

  setAdminKey(key: string): void {
    this.adminKey = key;
  }

  /** The admin API's id (`apikey_…`) of a key, assigned on first ask. */
  apiKeyId(key: string): string {
    for (const record of this.apiKeys.values()) {
      if (record.key === key) {
        return record.id;
      }
    }
    const record: AnthropicApiKeyRecord = {
      id: `apikey_01${randomString(22)}`,
      key,
      name: `key ${this.apiKeys.size + 1}`,
      status: 'active',
      createdAt: new Date().toISOString(),
    };
    this.apiKeys.set(record.id, record);
    return record.id;
  }

  apiKeyStatus(key: string): AnthropicApiKeyRecord['status'] | undefined {
    return [...this.apiKeys.values()].find((record) => record.key === key)?.status;
  }

  // ---- FakeProvider hooks ---------------------------------------------------------------------

  protected newKey(): string {
    return generateAnthropicKey();
  }

  protected presentedKey(req: IncomingMessage): string | undefined {
    const key = req.headers['x-api-key'];
    return typeof key === 'string' && key.length > 0 ? key : undefined;
  }

  /** A key switched off through the admin API answers like a revoked one. */
  protected override behaviourOf(key: string): KeyBehaviour | undefined {
    const status = this.apiKeyStatus(key);
    return status !== undefined && status !== 'active' ? { kind: 'revoked' } : super.behaviourOf(key);
  }

  protected override defaultHeaders(ctx: RequestContext): Record<string, string> {
    const headers: Record<string, string> = {
      'request-id': `req_011C${randomString(20)}`,
      'anthropic-organization-id': ORGANIZATION_ID,
    };
    return ctx.record.status >= 200 && ctx.record.status < 300
      ? { ...headers, ...this.rateLimitHeaders(ctx) }
      : headers;
  }

  protected answerAuthFailure(ctx: RequestContext, reason: 'missing' | 'unknown'): void {
    this.sendError(ctx, {
      status: 401,
      type: 'authentication_error',
      message: reason === 'missing' ? 'x-api-key header is required' : 'invalid x-api-key',
    });
  }

  protected answerBehaviour(ctx: RequestContext, behaviour: ErrorBehaviour): void {
    this.sendError(ctx, this.behaviourError(ctx, behaviour));
  }

  protected answerBodyTooLarge(ctx: RequestContext): void {
    this.sendError(ctx, {
      status: 413,
      type: 'request_too_large',
      message: 'Request exceeds the maximum allowed number of bytes.',
    });
  }

  protected answerInvalidJson(ctx: RequestContext): void {
    this.sendError(ctx, {
      status: 400,
      type: 'invalid_request_error',
      message: 'There was an issue with the request body: invalid JSON.',
    });
  }

  protected answerInternalError(ctx: RequestContext): void {
    this.sendError(ctx, { status: 500, type: 'api_error', message: 'Internal server error' });
  }

  protected override isOrganizationPath(path: string): boolean {
    return path === '/v1/organizations' || path.startsWith('/v1/organizations/');
  }

  protected async route(ctx: RequestContext): Promise<void> {
    if (ctx.path.startsWith('/v1/organizations/')) {
      this.routeAdmin(ctx);
      return;
    }
    const known =
      ctx.path === '/v1/models' ||
      ctx.path.startsWith('/v1/models/') ||
      ctx.path === '/v1/messages/count_tokens' ||
      ctx.path === '/v1/messages/batches' ||
      ctx.path.startsWith('/v1/messages/batches/') ||
      ctx.path === '/v1/files' ||
      ctx.path.startsWith('/v1/files/');
    if (!known && ctx.path !== '/v1/messages') {
      this.sendError(ctx, { status: 404, type: 'not_found_error', message: 'Not found' });
      return;
    }
    if (ctx.req.headers['anthropic-version'] === undefined) {
      this.sendError(ctx, {
        status: 400,
        type: 'invalid_request_error',
        message: 'anthropic-version: header is required',
      });
      return;
    }
    if (ctx.method === 'GET' && ctx.path === '/v1/models') {
      if (await this.admit(ctx, { generation: false })) {
        const data = this.models.map((id) => this.modelObject(id));
        this.sendJson(ctx, 200, {
          data,
          has_more: false,
          first_id: data[0]?.id ?? null,
          last_id: data[data.length - 1]?.id ?? null,
        });
      }
    } else if (ctx.method === 'GET' && ctx.path.startsWith('/v1/models/')) {
      if (await this.admit(ctx, { generation: false })) {
        const model = decodeURIComponent(ctx.path.slice('/v1/models/'.length));
        if (this.models.includes(model)) {
          this.sendJson(ctx, 200, this.modelObject(model));
        } else {
          this.sendError(ctx, this.modelNotFound(model));
        }
      }
    } else if (ctx.method === 'POST' && ctx.path === '/v1/messages') {
      await this.messages(ctx);
    } else if (ctx.method === 'POST' && ctx.path === '/v1/messages/count_tokens') {
      await this.countTokens(ctx);
    } else if (ctx.path.startsWith('/v1/messages/batches')) {
      await this.routeBatches(ctx);
    } else if (ctx.path.startsWith('/v1/files')) {
      await this.routeFiles(ctx);
    } else {
      this.sendError(ctx, { status: 405, type: 'invalid_request_error', message: 'Method not allowed' });
    }
  }

  // ---- Messages API ---------------------------------------------------------------------------

  private async messages(ctx: RequestContext): Promise<void> {
    const behaviour = await this.admit(ctx, { generation: true });
    if (!behaviour) {
      return;
    }
    const body = isRecord(ctx.body) ? ctx.body : {};
    const problem =
      typeof body.model !== 'string'
        ? 'model: Field required'
        : typeof body.max_tokens !== 'number'
          ? 'max_tokens: Field required'
          : !Array.isArray(body.messages)
            ? 'messages: Field required'
            : undefined;
    if (problem !== undefined || typeof body.model !== 'string' || !Array.isArray(body.messages)) {
      this.sendError(ctx, { status: 400, type: 'invalid_request_error', message: problem ?? '' });
      return;
    }
    if (!this.isModelKnown(body.model)) {
      this.sendError(ctx, this.modelNotFound(body.model));
      return;
    }
    const promptTexts = [
      ...contentTexts(body.system),
      ...body.messages.flatMap((message: unknown) => (isRecord(message) ? contentTexts(message.content) : [])),
    ];
    const plan = this.planReply(behaviour, body.max_tokens as number);
    const usage = this.usageFor(behaviour, promptTexts, plan, body.model);
    const message = {
      id: `msg_01${randomString(22)}`,
      type: 'message',
      role: 'assistant',
      model: body.model,
      content: [] as unknown[],
      stop_reason: null as string | null,
      stop_sequence: null,
    };
    const toolUse = this.toolUseFor(body);
    const stopReason = toolUse ? 'tool_use' : plan.truncated ? 'max_tokens' : 'end_turn';
    if (body.stream !== true) {
      const sent = this.sendJson(ctx, 200, {
        ...message,
        content: [
          toolUse
            ? { type: 'tool_use', id: toolUse.id, name: toolUse.name, input: JSON.parse(toolUse.arguments) }
            : { type: 'text', text: plan.text },
        ],
        stop_reason: stopReason,
        usage: this.usageBody(usage, usage.output),
      });
      if (sent) {
        ctx.record.reportedUsage = usage;
        this.bill(ctx, usage);
      }
      return;
    }
    await this.streamMessage(ctx, behaviour, message, plan.pieces, usage, stopReason, toolUse);
  }

  /** Calls the first tool offered unless the last user message already carries a tool result. */
  private toolUseFor(body: Record<string, unknown>): ToolCall | undefined {
    const tools = Array.isArray(body.tools) ? body.tools : [];
    const messages = Array.isArray(body.messages) ? body.messages : [];
    const last: unknown = messages[messages.length - 1];
    const answered =
      isRecord(last) &&
      Array.isArray(last.content) &&
      last.content.some((block: unknown) => isRecord(block) && block.type === 'tool_result');
    if (answered || (isRecord(body.tool_choice) && body.tool_choice.type === 'none')) return undefined;
    return toolCallFor(
      tools.flatMap((tool: unknown) =>
        isRecord(tool) && typeof tool.name === 'string' ? [{ name: tool.name, schema: tool.input_schema }] : [],
      ),
      'toolu_01',
    );
  }

  private async streamMessage(
    ctx: RequestContext,
    behaviour: ValidBehaviour,
    message: Record<string, unknown>,
    pieces: string[],
    usage: ReportedUsage,
    stopReason: string,
    toolUse?: ToolCall,
  ): Promise<void> {
    if (!this.openSse(ctx)) {
      return;
    }
    // Like the real API: the start event reports the input and a placeholder output of 1.
    const opening = [
      ['message_start', { type: 'message_start', message: { ...message, usage: this.usageBody(usage, 1) } }],
      [
        'content_block_start',
        {
          type: 'content_block_start',
          index: 0,
          content_block: toolUse
            ? { type: 'tool_use', id: toolUse.id, name: toolUse.name, input: {} }
            : { type: 'text', text: '' },
        },
      ],
      ['ping', { type: 'ping' }],
    ] as const;
    for (const [event, data] of opening) {
      if (!this.sseEvent(ctx, event, data)) {
        return;
      }
    }
    if (toolUse) {
      // Tool input streams as pieces of JSON text.
      pieces = [];
      for (const piece of cutInto(toolUse.arguments, 3)) {
        await this.pause();
        const delta = {
          type: 'content_block_delta',
          index: 0,
          delta: { type: 'input_json_delta', partial_json: piece },
        };
        if (!this.sseEvent(ctx, 'content_block_delta', delta)) return;
      }
    }
    const failure = behaviour.midStreamError;
    const failAfter = Math.min(Math.max(0, failure?.afterChunks ?? 1), pieces.length);
    const halfway = Math.floor(pieces.length / 2);
    for (let index = 0; index <= pieces.length; index += 1) {
      if (!(toolUse && index === pieces.length)) await this.pause();
      if (failure && index === failAfter) {
        // Headers said 200 already: the error can only arrive as an event.
        this.sseEvent(ctx, 'error', {
          type: 'error',
          error: {
            type: typeof failure.code === 'string' ? failure.code : 'overloaded_error',
            message: failure.message ?? 'Overloaded',
          },
        });
        this.endSse(ctx);
        return;
      }
      if (index === pieces.length) {
        break;
      }
      const delta = { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: pieces[index] } };
      if (!this.sseEvent(ctx, 'content_block_delta', delta)) {
        return;
      }
      if (behaviour.intermediateMessageDelta && index === halfway) {
        // Counts in message_delta are running totals; a reader must keep the last, not add up.
        this.sseEvent(ctx, 'message_delta', {
          type: 'message_delta',
          delta: { stop_reason: null, stop_sequence: null },
          usage: { output_tokens: Math.max(1, Math.min(usage.output, index + 1)) },
        });
      }
    }
    const closing = [
      ['content_block_stop', { type: 'content_block_stop', index: 0 }],
      [
        'message_delta',
        {
          type: 'message_delta',
          delta: { stop_reason: stopReason, stop_sequence: null },
          usage: { output_tokens: usage.output },
        },
      ],
      ['message_stop', { type: 'message_stop' }],
    ] as const;
    for (const [event, data] of closing) {
      if (!this.sseEvent(ctx, event, data)) {
        return;
      }
    }
    ctx.record.reportedUsage = usage;
    this.bill(ctx, usage);
    this.endSse(ctx);
  }

  /** Anthropic's input_tokens leave out the cached part, which has fields of its own. */
  private usageBody(usage: ReportedUsage, output: number): Record<string, unknown> {
    return {
      input_tokens: Math.max(0, usage.input - usage.cached),
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: usage.cached,
      output_tokens: output,
      service_tier: 'standard',
    };
  }

  private modelObject(id: string): { type: string; id: string; display_name: string; created_at: string } {
    const display = id
      .replace(/^claude-/, 'Claude ')
      .replace(/-(\d)-(\d)$/, ' $1.$2')
      .replace(/-/g, ' ');
    return { type: 'model', id, display_name: display, created_at: '2025-09-29T00:00:00Z' };
  }

  private modelNotFound(model: string): AnthropicError {
    return { status: 404, type: 'not_found_error', message: `model: ${model}` };
  }

  // ---- count_tokens, message batches, files ---------------------------------------------------

  private readonly batches = new Map<string, Record<string, unknown>>();
  private readonly files = new Map<string, { object: Record<string, unknown>; bytes: Buffer }>();

  /** The prompt's token count: the key's `usage.input` when set, else the word estimate. Not usage. */
  private async countTokens(ctx: RequestContext): Promise<void> {
    const behaviour = await this.admit(ctx, { generation: false });
    if (!behaviour) return;
    const body = isRecord(ctx.body) ? ctx.body : {};
    if (typeof body.model !== 'string' || !Array.isArray(body.messages)) {
      this.sendError(ctx, {
        status: 400,
        type: 'invalid_request_error',
        message: 'model and messages: Field required',
      });
      return;
    }
    const texts = [
      ...contentTexts(body.system),
      ...body.messages.flatMap((message: unknown) => (isRecord(message) ? contentTexts(message.content) : [])),
    ];
    const valid = behaviour.kind === 'valid' ? behaviour : { kind: 'valid' as const };
    const input = this.usageFor(valid, texts, this.planReply(valid, 0), body.model).input;
    this.sendJson(ctx, 200, { input_tokens: input });
  }

  private batchObject(id: string, count: number): Record<string, unknown> {
    const created = new Date();
    return {
      id,
      type: 'message_batch',
      processing_status: 'in_progress',
      request_counts: { processing: count, succeeded: 0, errored: 0, canceled: 0, expired: 0 },
      ended_at: null,
      created_at: created.toISOString(),
      expires_at: new Date(created.getTime() + 86_400_000).toISOString(),
      archived_at: null,
      cancel_initiated_at: null,
      results_url: null,
    };
  }

  /** Message batches: billed when they run, so creating, reading and listing report no usage. */
  private async routeBatches(ctx: RequestContext): Promise<void> {
    if (!(await this.admit(ctx, { generation: false }))) return;
    const rest = ctx.path.slice('/v1/messages/batches'.length);
    const match = /^\/([^/]+)(?:\/(cancel|results))?$/.exec(rest);
    if (rest === '' && ctx.method === 'POST') {
      const body = isRecord(ctx.body) ? ctx.body : {};
      if (!Array.isArray(body.requests) || body.requests.length === 0) {
        this.sendError(ctx, { status: 400, type: 'invalid_request_error', message: 'requests: Field required' });
        return;
      }
      const batch = this.batchObject(`msgbatch_01${randomString(22)}`, body.requests.length);
      this.batches.set(String(batch.id), { ...batch, requests: body.requests });
      this.sendJson(ctx, 200, batch);
    } else if (rest === '' && ctx.method === 'GET') {
      this.sendList(
        ctx,
        [...this.batches.values()].map(({ requests: _r, ...batch }) => batch),
      );
    } else if (match) {
      const id = decodeURIComponent(match[1]);
      const stored = this.batches.get(id);
      if (!stored) {
        this.sendError(ctx, { status: 404, type: 'not_found_error', message: `message_batch ${id} not found` });
        return;
      }
      const { requests, ...batch } = stored;
      if (match[2] === 'cancel' && ctx.method === 'POST') {
        Object.assign(stored, { processing_status: 'canceling', cancel_initiated_at: new Date().toISOString() });
        const { requests: _r, ...updated } = stored;
        this.sendJson(ctx, 200, updated);
      } else if (match[2] === 'results' && ctx.method === 'GET') {
        const lines = (Array.isArray(requests) ? requests : []).map((request: unknown) =>
          JSON.stringify({
            custom_id: isRecord(request) ? request.custom_id : null,
            result: { type: 'succeeded', message: { id: `msg_01${randomString(22)}`, type: 'message' } },
          }),
        );
        this.sendBody(ctx, 200, 'application/binary', Buffer.from(lines.join('\n') + '\n'));
      } else if (match[2] === undefined && ctx.method === 'GET') {
        this.sendJson(ctx, 200, batch);
      } else if (match[2] === undefined && ctx.method === 'DELETE') {
        this.batches.delete(id);
        this.sendJson(ctx, 200, { id, type: 'message_batch_deleted' });
      } else {
        this.sendError(ctx, { status: 405, type: 'invalid_request_error', message: 'Method not allowed' });
      }
    } else {
      this.sendError(ctx, { status: 404, type: 'not_found_error', message: 'Not found' });
    }
  }

  /** The Files API (beta): multipart upload, list, metadata, download, delete. */
  private async routeFiles(ctx: RequestContext): Promise<void> {
    if (!(await this.admit(ctx, { generation: false }))) return;
    const match = /^\/v1\/files(?:\/([^/]+)(\/content)?)?$/.exec(ctx.path);
    if (!match) {
      this.sendError(ctx, { status: 404, type: 'not_found_error', message: 'Not found' });
      return;
    }
    if (match[1] === undefined) {
      if (ctx.method === 'POST') {
        const file = ctx.form?.files.find((candidate) => candidate.field === 'file');
        if (!file) {
          this.sendError(ctx, { status: 400, type: 'invalid_request_error', message: 'file: Field required' });
          return;
        }
        const object = {
          id: `file_011C${randomString(20)}`,
          type: 'file',
          filename: file.filename,
          mime_type: file.contentType,
          size_bytes: file.bytes.length,
          created_at: new Date().toISOString(),
          downloadable: false,
        };
        this.files.set(object.id, { object, bytes: file.bytes });
        this.sendJson(ctx, 200, object);
      } else {
        this.sendList(
          ctx,
          [...this.files.values()].map((file) => file.object),
        );
      }
      return;
    }
    const id = decodeURIComponent(match[1]);
    const file = this.files.get(id);
    if (!file) {
      this.sendError(ctx, { status: 404, type: 'not_found_error', message: `File not found: ${id}` });
    } else if (match[2]) {
      this.sendBody(ctx, 200, file.object.mime_type as string, file.bytes);
    } else if (ctx.method === 'DELETE') {
      this.files.delete(id);
      this.sendJson(ctx, 200, { id, type: 'file_deleted' });
    } else {
      this.sendJson(ctx, 200, file.object);
    }
  }

  private sendList(ctx: RequestContext, data: Record<string, unknown>[]): void {
    this.sendJson(ctx, 200, {
      data,
      has_more: false,
      first_id: data[0]?.id ?? null,
      last_id: data[data.length - 1]?.id ?? null,
    });
  }

  // ---- errors ---------------------------------------------------------------------------------

  private behaviourError(ctx: RequestContext, behaviour: ErrorBehaviour): AnthropicError {
    switch (behaviour.kind) {
      case 'revoked':
        return { status: 401, type: 'authentication_error', message: 'invalid x-api-key' };
      case 'restricted':
        return {
          status: 403,
          type: 'permission_error',
          message: 'Your API key does not have permission to use the specified resource.',
        };
      case 'rate_limited': {
        const retryAfter = behaviour.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS;
        return {
          status: 429,
          type: 'rate_limit_error',
          message: `This request would exceed the rate limit for your organization (${ORGANIZATION_ID}) of ${RATE_LIMITS.requests} requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.`,
          headers: { 'retry-after': String(retryAfter), ...this.rateLimitHeaders(ctx, retryAfter) },
        };
      }
      case 'out_of_credit':
        if (behaviour.variant === 'spend_limit') {
          return {
            status: 400,
            type: 'invalid_request_error',
            message:
              'You have reached your specified API usage limits. You will regain access on 2030-01-01 at 00:00 UTC.',
          };
        }
        if (behaviour.variant === 'credit_balance') {
          return {
            status: 400,
            type: 'invalid_request_error',
            message:
              'Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.',
          };
        }
        return {
          status: 402,
          type: 'billing_error',
          message: 'Your account has a billing issue. Please check Plans & Billing.',
        };
      case 'failing': {
        const status = behaviour.status ?? 500;
        if (status === 529) {
          return { status, type: 'overloaded_error', message: 'Overloaded' };
        }
        if (status === 504) {
          return { status, type: 'timeout_error', message: 'Request timed out' };
        }
        return { status, type: 'api_error', message: 'Internal server error' };
      }
    }
  }

  private sendError(ctx: RequestContext, error: AnthropicError): void {
    this.sendJson(
      ctx,
      error.status,
      { type: 'error', error: { type: error.type, message: error.message } },
      error.headers,
    );
  }

  /** Resets are RFC 3339 times, unlike the durations of the OpenAI family. */
  private rateLimitHeaders(ctx: RequestContext, limitedForSeconds?: number): Record<string, string> {
    const limited = limitedForSeconds !== undefined;
    const reset = new Date(Date.now() + (limited ? limitedForSeconds * 1000 : 60_000))
      .toISOString()
      .replace(/\.\d{3}Z$/, 'Z');
    const used = this.tokensUsed(ctx.key);
    const windows = {
      requests: [RATE_LIMITS.requests, limited ? 0 : Math.max(0, RATE_LIMITS.requests - this.requestCount(ctx.key))],
      'input-tokens': [RATE_LIMITS.inputTokens, limited ? 0 : Math.max(0, RATE_LIMITS.inputTokens - used)],
      'output-tokens': [RATE_LIMITS.outputTokens, limited ? 0 : RATE_LIMITS.outputTokens],
      tokens: [
        RATE_LIMITS.inputTokens + RATE_LIMITS.outputTokens,
        limited ? 0 : Math.max(0, RATE_LIMITS.inputTokens + RATE_LIMITS.outputTokens - used),
      ],
    };
    const headers: Record<string, string> = {};
    for (const [name, [limit, remaining]] of Object.entries(windows)) {
      headers[`anthropic-ratelimit-${name}-limit`] = String(limit);
      headers[`anthropic-ratelimit-${name}-remaining`] = String(remaining);
      headers[`anthropic-ratelimit-${name}-reset`] = reset;
    }
    return headers;
  }

  // ---- admin API ------------------------------------------------------------------------------

  private routeAdmin(ctx: RequestContext): void {
    if (ctx.key === undefined || ctx.key !== this.adminKey) {
      if (ctx.key !== undefined && this.hasKey(ctx.key)) {
        this.sendError(ctx, {
          status: 401,
          type: 'authentication_error',
          message: 'invalid x-api-key: the admin API requires an admin key (sk-ant-admin01-...)',
        });
      } else {
        this.answerAuthFailure(ctx, ctx.key === undefined ? 'missing' : 'unknown');
      }
      return;
    }
    const match = /^\/v1\/organizations\/api_keys(?:\/([^/]+))?$/.exec(ctx.path);
    if (!match) {
      this.sendError(ctx, { status: 404, type: 'not_found_error', message: 'Not found' });
      return;
    }
    if (match[1] === undefined) {
      if (ctx.method !== 'GET') {
        this.sendError(ctx, { status: 405, type: 'invalid_request_error', message: 'Method not allowed' });
        return;
      }
      const data = [...this.apiKeys.values()].map((record) => this.apiKeyObject(record));
      this.sendJson(ctx, 200, {
        data,
        has_more: false,
        first_id: data[0]?.id ?? null,
        last_id: data[data.length - 1]?.id ?? null,
      });
      return;
    }
    const record = this.apiKeys.get(decodeURIComponent(match[1]));
    if (!record) {
      this.sendError(ctx, { status: 404, type: 'not_found_error', message: 'API key not found' });
      return;
    }
    if (ctx.method === 'POST') {
      const body = isRecord(ctx.body) ? ctx.body : {};
      if (body.status !== undefined) {
        if (body.status !== 'active' && body.status !== 'inactive' && body.status !== 'archived') {
          this.sendError(ctx, {
            status: 400,
            type: 'invalid_request_error',
            message: "status: Input should be 'active', 'inactive' or 'archived'",
          });
          return;
        }
        record.status = body.status;
      }
      if (typeof body.name === 'string') {
        record.name = body.name;
      }
    }
    this.sendJson(ctx, 200, this.apiKeyObject(record));
  }

  private apiKeyObject(record: AnthropicApiKeyRecord): Record<string, unknown> {
    return {
      type: 'api_key',
      id: record.id,
      name: record.name,
      status: record.status,
      created_at: record.createdAt,
      // The admin API shows a hint of the key, never the key.
      partial_key_hint: `sk-ant-api03-${record.key.slice(-6, -2)}...${record.key.slice(-2)}`,
      workspace_id: null,
      created_by: { id: `user_${randomUUID()}`, type: 'user' },
    };
  }
}
