import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import {
  contentTexts,
  countWords,
  ErrorBehaviour,
  FakeProvider,
  formatDuration,
  isRecord,
  MidStreamErrorSpec,
  nowSeconds,
  randomString,
  ReplyPlan,
  ReportedUsage,
  RequestContext,
  ValidBehaviour,
} from './fake-provider';

/** An error in the OpenAI family's terms; each provider renders it in its own body shape. */
export interface CompatError {
  status: number;
  message: string;
  type?: string | null;
  code?: string | number | null;
  param?: string | null;
  metadata?: Record<string, unknown>;
  headers?: Record<string, string>;
}

export interface ChatRequest {
  body: Record<string, unknown>;
  model: string;
  promptTexts: string[];
  maxTokens: number | undefined;
  stream: boolean;
  includeUsage: boolean;
}

export interface ChatAnswer {
  id: string;
  created: number;
  model: string;
  plan: ReplyPlan;
  usage: ReportedUsage;
  finishReason: 'stop' | 'length' | 'tool_calls';
  /** Set when the request offered tools and no tool result came back yet. */
  toolCall?: ToolCall;
}

/** The call a fake makes to the first tool offered, with arguments that fit its JSON schema. */
export interface ToolCall {
  id: string;
  name: string;
  /** JSON text. */
  arguments: string;
}

/** Endpoints beyond chat and models that a fake of the OpenAI family serves. */
export type CompatFeature =
  'embeddings' | 'responses' | 'completions' | 'stored-chat' | 'files' | 'batches' | 'transcriptions';

export type ChunkPosition = 'first' | 'content' | 'finish';

export interface RateLimitShape {
  requests: number;
  tokens: number;
  requestsResetMs: number;
  tokensResetMs: number;
}

const DEFAULT_RETRY_AFTER_SECONDS = 20;
const MAX_EMBEDDING_DIMENSIONS = 3072;

export function bearerToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (typeof header !== 'string') {
    return undefined;
  }
  const match = /^Bearer\s+(.+)$/i.exec(header.trim());
  return match ? match[1].trim() : undefined;
}

function finiteNumber(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

/** Arguments that satisfy a JSON schema's required properties (enough for SDK validation). */
export function argumentsFor(schema: unknown): Record<string, unknown> {
  const properties = isRecord(schema) && isRecord(schema.properties) ? schema.properties : {};
  const required = isRecord(schema) && Array.isArray(schema.required) ? schema.required : Object.keys(properties);
  const args: Record<string, unknown> = {};
  for (const name of required) {
    if (typeof name !== 'string') continue;
    const property = isRecord(properties[name]) ? properties[name] : {};
    if (Array.isArray(property.enum) && property.enum.length > 0) args[name] = property.enum[0];
    else if (property.type === 'number' || property.type === 'integer') args[name] = 1;
    else if (property.type === 'boolean') args[name] = true;
    else if (property.type === 'array') args[name] = [];
    else if (property.type === 'object') args[name] = argumentsFor(property);
    else args[name] = 'Paris';
  }
  return args;
}

/** A tool call for the first of `tools` (`{ name, schema }`), or undefined when none is offered. */
export function toolCallFor(tools: { name: string; schema: unknown }[], idPrefix = 'call_'): ToolCall | undefined {
  const tool = tools[0];
  return tool
    ? { id: `${idPrefix}${randomString(24)}`, name: tool.name, arguments: JSON.stringify(argumentsFor(tool.schema)) }
    : undefined;
}

/** Cuts text into about `count` pieces, for streaming arguments. */
export function cutInto(text: string, count: number): string[] {
  const size = Math.max(1, Math.ceil(text.length / count));
  const pieces: string[] = [];
  for (let at = 0; at < text.length; at += size) pieces.push(text.slice(at, at + size));
  return pieces.length > 0 ? pieces : [''];
}

/** Words of a Responses-API `input`: a string, or items whose content is a string or text parts. */
export function responsesInputTexts(input: unknown): string[] {
  if (typeof input === 'string') return [input];
  if (!Array.isArray(input)) return [];
  return input.flatMap((item: unknown) =>
    isRecord(item) ? [...contentTexts(item.content), ...(typeof item.output === 'string' ? [item.output] : [])] : [],
  );
}

interface StoredFile {
  object: Record<string, unknown>;
  bytes: Buffer;
}

/** Shared machinery of the providers that speak OpenAI's chat-completions dialect. */
export abstract class OpenAiCompatibleFakeProvider extends FakeProvider {
  /** Path prefix of the API, e.g. `/v1`; the base URL is origin + prefix. */
  protected abstract readonly apiPrefix: string;
  protected readonly supportsEmbeddings: boolean = false;
  /** Endpoints this provider serves besides chat and models. */
  protected readonly features: ReadonlySet<CompatFeature> = new Set();
  /** Stored objects, by id: chat completions, responses, files, batches. */
  protected readonly storedCompletions = new Map<string, Record<string, unknown>>();
  protected readonly storedResponses = new Map<string, Record<string, unknown>>();
  protected readonly storedFiles = new Map<string, StoredFile>();
  protected readonly storedBatches = new Map<string, Record<string, unknown>>();
  protected readonly rateLimits: RateLimitShape = {
    requests: 5000,
    tokens: 2_000_000,
    requestsResetMs: 12,
    tokensResetMs: 6000,
  };

  get baseUrl(): string {
    return `${this.origin}${this.apiPrefix}`;
  }

  // ---- provider hooks -------------------------------------------------------------------------

  protected abstract errorBody(error: CompatError): unknown;

  protected abstract usageBody(usage: ReportedUsage): Record<string, unknown>;

  protected abstract modelObject(id: string): Record<string, unknown>;

  protected abstract authError(ctx: RequestContext, reason: 'missing' | 'unknown'): CompatError;

  protected abstract behaviourError(ctx: RequestContext, behaviour: ErrorBehaviour): CompatError;

  /** Provider-specific endpoints; returns true when it answered. */
  protected routeExtra(_ctx: RequestContext, _subPath: string): Promise<boolean> {
    return Promise.resolve(false);
  }

  protected completionId(): string {
    return `chatcmpl-${randomString(29)}`;
  }

  override reset(): void {
    super.reset();
    this.storedCompletions.clear();
    this.storedResponses.clear();
    this.storedFiles.clear();
    this.storedBatches.clear();
  }

  /** The assistant message's content, or its tool call. */
  protected messageFields(answer: ChatAnswer): Record<string, unknown> {
    const call = answer.toolCall;
    return call
      ? {
          content: null,
          tool_calls: [{ id: call.id, type: 'function', function: { name: call.name, arguments: call.arguments } }],
        }
      : { content: answer.plan.text };
  }

  protected completionBody(answer: ChatAnswer): Record<string, unknown> {
    return {
      id: answer.id,
      object: 'chat.completion',
      created: answer.created,
      model: answer.model,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', ...this.messageFields(answer), refusal: null, annotations: [] },
          logprobs: null,
          finish_reason: answer.finishReason,
        },
      ],
      usage: this.usageBody(answer.usage),
      service_tier: 'default',
      system_fingerprint: 'fp_fake0001',
    };
  }

  /** OpenAI marks every chunk `usage: null` when the client asked for a usage chunk. */
  protected usageNullOnChunks(_request: ChatRequest): boolean {
    return false;
  }

  protected decorateChunk(
    chunk: Record<string, unknown>,
    _position: ChunkPosition,
    _answer: ChatAnswer,
  ): Record<string, unknown> {
    return chunk;
  }

  /** The chunk after the finish chunk that carries the usage, if this provider sends one. */
  protected usageChunk(
    request: ChatRequest,
    base: Record<string, unknown>,
    answer: ChatAnswer,
  ): Record<string, unknown> | undefined {
    return request.includeUsage ? { ...base, choices: [], usage: this.usageBody(answer.usage) } : undefined;
  }

  /** Whether a complete stream told the client its usage (in any chunk). */
  protected streamReportsUsage(request: ChatRequest): boolean {
    return request.includeUsage;
  }

  protected midStreamErrorChunk(_base: Record<string, unknown>, spec: MidStreamErrorSpec): Record<string, unknown> {
    return {
      error: {
        message: spec.message ?? 'The server had an error while processing your request. Sorry about that!',
        type: 'server_error',
        param: null,
        code: spec.code ?? null,
      },
    };
  }

  /** Opens the SSE answer; OpenRouter overrides it to keep the connection busy while it waits. */
  protected async openChatStream(ctx: RequestContext, _behaviour: ValidBehaviour): Promise<boolean> {
    return Promise.resolve(this.openSse(ctx, this.rateLimitHeaders(ctx)));
  }

  protected defersValidDelay(_ctx: RequestContext): boolean {
    return false;
  }

  /** x-ratelimit-* headers; a rate-limited key sees 0 remaining and the retry delay as reset. */
  protected rateLimitHeaders(ctx: RequestContext, limitedForSeconds?: number): Record<string, string> {
    const limits = this.rateLimits;
    const limited = limitedForSeconds !== undefined;
    const remainingRequests = limited ? 0 : Math.max(0, limits.requests - this.requestCount(ctx.key));
    const remainingTokens = limited ? 0 : Math.max(0, limits.tokens - this.tokensUsed(ctx.key));
    const limitedMs = (limitedForSeconds ?? 0) * 1000;
    return {
      'x-ratelimit-limit-requests': String(limits.requests),
      'x-ratelimit-limit-tokens': String(limits.tokens),
      'x-ratelimit-remaining-requests': String(remainingRequests),
      'x-ratelimit-remaining-tokens': String(remainingTokens),
      'x-ratelimit-reset-requests': formatDuration(limited ? limitedMs : limits.requestsResetMs),
      'x-ratelimit-reset-tokens': formatDuration(limited ? limitedMs : limits.tokensResetMs),
    };
  }

  protected retryAfterOf(behaviour: { retryAfterSeconds?: number }): number {
    return behaviour.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS;
  }

  protected modelNotFoundError(model: string): CompatError {
    return {
      status: 404,
      message: `The model \`${model}\` does not exist or you do not have access to it.`,
      type: 'invalid_request_error',
      param: null,
      code: 'model_not_found',
    };
  }

  // ---- FakeProvider hooks ---------------------------------------------------------------------

  protected presentedKey(req: IncomingMessage): string | undefined {
    return bearerToken(req);
  }

  protected answerAuthFailure(ctx: RequestContext, reason: 'missing' | 'unknown'): void {
    this.sendError(ctx, this.authError(ctx, reason));
  }

  protected answerBehaviour(ctx: RequestContext, behaviour: ErrorBehaviour): void {
    this.sendError(ctx, this.behaviourError(ctx, behaviour));
  }

  protected answerBodyTooLarge(ctx: RequestContext): void {
    this.sendError(ctx, {
      status: 413,
      message: 'Request body too large.',
      type: 'invalid_request_error',
      param: null,
      code: 'request_too_large',
    });
  }

  protected answerInvalidJson(ctx: RequestContext): void {
    this.sendError(ctx, {
      status: 400,
      message:
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
      type: 'invalid_request_error',
      param: null,
      code: null,
    });
  }

  protected answerInternalError(ctx: RequestContext): void {
    this.sendError(ctx, {
      status: 500,
      message: 'The server had an error while processing your request. Sorry about that!',
      type: 'server_error',
      param: null,
      code: null,
    });
  }

  protected answerNotFound(ctx: RequestContext): void {
    this.sendError(ctx, {
      status: 404,
      message: `Invalid URL (${ctx.method} ${ctx.path})`,
      type: 'invalid_request_error',
      param: null,
      code: null,
    });
  }

  protected sendError(ctx: RequestContext, error: CompatError): void {
    this.sendJson(ctx, error.status, this.errorBody(error), error.headers);
  }

  protected async route(ctx: RequestContext): Promise<void> {
    if (!ctx.path.startsWith(`${this.apiPrefix}/`)) {
      this.answerNotFound(ctx);
      return;
    }
    const sub = ctx.path.slice(this.apiPrefix.length);
    if (await this.routeExtra(ctx, sub)) {
      return;
    }
    const modelMatch = /^\/models\/(.+)$/.exec(sub);
    if (ctx.method === 'GET' && sub === '/models') {
      await this.listModels(ctx);
    } else if (ctx.method === 'GET' && modelMatch) {
      await this.retrieveModel(ctx, decodeURIComponent(modelMatch[1]));
    } else if (ctx.method === 'POST' && sub === '/chat/completions') {
      await this.chatCompletions(ctx);
    } else if (ctx.method === 'POST' && sub === '/embeddings' && this.supportsEmbeddings) {
      await this.embeddings(ctx);
    } else if (!(await this.routeFeature(ctx, sub))) {
      this.answerNotFound(ctx);
    }
  }

  /** The endpoints listed in `features`; false when none matched. */
  private async routeFeature(ctx: RequestContext, sub: string): Promise<boolean> {
    const has = (feature: CompatFeature): boolean => this.features.has(feature);
    const get = ctx.method === 'GET';
    const post = ctx.method === 'POST';
    const del = ctx.method === 'DELETE';
    let match: RegExpExecArray | null;
    if (has('responses') && post && sub === '/responses') {
      await this.responses(ctx);
    } else if (has('responses') && (get || del) && (match = /^\/responses\/([^/]+)$/.exec(sub))) {
      await this.storedObject(ctx, this.storedResponses, match[1], 'response');
    } else if (has('completions') && post && sub === '/completions') {
      await this.legacyCompletions(ctx);
    } else if (has('stored-chat') && get && sub === '/chat/completions') {
      await this.listObjects(ctx, this.storedCompletions);
    } else if (has('stored-chat') && (get || del) && (match = /^\/chat\/completions\/([^/]+)$/.exec(sub))) {
      await this.storedObject(ctx, this.storedCompletions, match[1], 'chat.completion');
    } else if (has('files') && sub === '/files' && (get || post)) {
      await (post ? this.uploadFile(ctx) : this.listObjects(ctx, this.storedFiles, (file) => file.object));
    } else if (has('files') && (get || del) && (match = /^\/files\/([^/]+)$/.exec(sub))) {
      await this.storedFileObject(ctx, match[1]);
    } else if (has('files') && get && (match = /^\/files\/([^/]+)\/content$/.exec(sub))) {
      await this.fileContent(ctx, match[1]);
    } else if (has('batches') && sub === '/batches' && (get || post)) {
      await (post ? this.createBatch(ctx) : this.listObjects(ctx, this.storedBatches));
    } else if (has('batches') && get && (match = /^\/batches\/([^/]+)$/.exec(sub))) {
      await this.storedObject(ctx, this.storedBatches, match[1], 'batch');
    } else if (has('batches') && post && (match = /^\/batches\/([^/]+)\/cancel$/.exec(sub))) {
      await this.cancelBatch(ctx, match[1]);
    } else if (has('transcriptions') && post && (sub === '/audio/transcriptions' || sub === '/audio/translations')) {
      await this.transcription(ctx);
    } else {
      return false;
    }
    return true;
  }

  // ---- endpoints ------------------------------------------------------------------------------

  protected async listModels(ctx: RequestContext): Promise<void> {
    if (await this.admit(ctx, { generation: false })) {
      this.sendJson(ctx, 200, {
        object: 'list',
        data: this.models.map((id) => this.modelObject(id)),
      });
    }
  }

  protected async retrieveModel(ctx: RequestContext, model: string): Promise<void> {
    if (!(await this.admit(ctx, { generation: false }))) {
      return;
    }
    if (this.models.includes(model)) {
      this.sendJson(ctx, 200, this.modelObject(model));
    } else {
      this.sendError(ctx, this.modelNotFoundError(model));
    }
  }

  protected async chatCompletions(ctx: RequestContext): Promise<void> {
    const behaviour = await this.admit(ctx, {
      generation: true,
      deferValidDelay: this.defersValidDelay(ctx),
    });
    if (!behaviour) {
      return;
    }
    const request = this.parseChatRequest(ctx);
    if (!request) {
      return;
    }
    const plan = this.planReply(behaviour, request.maxTokens);
    const toolCall = this.chatToolCall(request.body);
    const answer: ChatAnswer = {
      id: this.completionId(),
      created: nowSeconds(),
      model: request.model,
      plan,
      usage: this.usageFor(behaviour, request.promptTexts, plan, request.model),
      finishReason: toolCall ? 'tool_calls' : plan.truncated ? 'length' : 'stop',
      ...(toolCall ? { toolCall } : {}),
    };
    if (request.stream) {
      await this.streamChat(ctx, behaviour, request, answer);
      return;
    }
    const completion = this.completionBody(answer);
    if (this.features.has('stored-chat')) {
      this.storedCompletions.set(answer.id, completion);
    }
    if (this.sendJson(ctx, 200, completion, this.rateLimitHeaders(ctx))) {
      ctx.record.reportedUsage = answer.usage;
      this.bill(ctx, answer.usage);
    }
  }

  /** Chat Completions: call the first tool unless the last message is a tool's result. */
  protected chatToolCall(body: Record<string, unknown>): ToolCall | undefined {
    const tools = Array.isArray(body.tools) ? body.tools : [];
    const messages = Array.isArray(body.messages) ? body.messages : [];
    const last: unknown = messages[messages.length - 1];
    if (tools.length === 0 || body.tool_choice === 'none' || (isRecord(last) && last.role === 'tool')) {
      return undefined;
    }
    return toolCallFor(
      tools.flatMap((tool: unknown) =>
        isRecord(tool) && isRecord(tool.function) && typeof tool.function.name === 'string'
          ? [{ name: tool.function.name, schema: tool.function.parameters }]
          : [],
      ),
    );
  }

  protected parseChatRequest(ctx: RequestContext): ChatRequest | undefined {
    const body = isRecord(ctx.body) ? ctx.body : {};
    if (typeof body.model !== 'string' || body.model.length === 0) {
      this.sendError(ctx, {
        status: 400,
        message: 'you must provide a model parameter',
        type: 'invalid_request_error',
        param: null,
        code: null,
      });
      return undefined;
    }
    if (!Array.isArray(body.messages)) {
      this.sendError(ctx, {
        status: 400,
        message: "Missing required parameter: 'messages'.",
        type: 'invalid_request_error',
        param: 'messages',
        code: 'missing_required_parameter',
      });
      return undefined;
    }
    if (!this.isModelKnown(body.model)) {
      this.sendError(ctx, this.modelNotFoundError(body.model));
      return undefined;
    }
    const options = isRecord(body.stream_options) ? body.stream_options : {};
    return {
      body,
      model: body.model,
      promptTexts: body.messages.flatMap((message: unknown) =>
        isRecord(message) ? contentTexts(message.content) : [],
      ),
      maxTokens: finiteNumber(body.max_completion_tokens) ?? finiteNumber(body.max_tokens),
      stream: body.stream === true,
      includeUsage: options.include_usage === true,
    };
  }

  protected async streamChat(
    ctx: RequestContext,
    behaviour: ValidBehaviour,
    request: ChatRequest,
    answer: ChatAnswer,
  ): Promise<void> {
    if (!(await this.openChatStream(ctx, behaviour))) {
      return;
    }
    const base: Record<string, unknown> = {
      id: answer.id,
      object: 'chat.completion.chunk',
      created: answer.created,
      model: answer.model,
      service_tier: 'default',
      system_fingerprint: 'fp_fake0001',
    };
    const usageNull = this.usageNullOnChunks(request) ? { usage: null } : {};
    const chunk = (
      position: ChunkPosition,
      delta: Record<string, unknown>,
      finishReason: string | null,
    ): Record<string, unknown> =>
      this.decorateChunk(
        {
          ...base,
          choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
          ...usageNull,
        },
        position,
        answer,
      );
    const failure = behaviour.midStreamError;
    const failAfter = Math.max(0, failure?.afterChunks ?? 1);

    const call = answer.toolCall;
    if (!this.sseData(ctx, chunk('first', { role: 'assistant', content: call ? null : '' }, null))) {
      return;
    }
    await this.pause();
    if (call) {
      const header = { index: 0, id: call.id, type: 'function', function: { name: call.name, arguments: '' } };
      if (!this.sseData(ctx, chunk('content', { tool_calls: [header] }, null))) return;
      for (const piece of cutInto(call.arguments, 3)) {
        await this.pause();
        if (
          !this.sseData(ctx, chunk('content', { tool_calls: [{ index: 0, function: { arguments: piece } }] }, null))
        ) {
          return;
        }
      }
    }
    for (let index = 0; index <= (call ? 0 : answer.plan.pieces.length); index += 1) {
      if (failure && index === Math.min(failAfter, answer.plan.pieces.length)) {
        // The status line already said 200: the error can only travel as a data chunk.
        this.sseData(ctx, this.midStreamErrorChunk(base, failure));
        this.endSse(ctx);
        return;
      }
      if (call || index === answer.plan.pieces.length) {
        break;
      }
      if (!this.sseData(ctx, chunk('content', { content: answer.plan.pieces[index] }, null))) {
        return;
      }
      await this.pause();
    }
    if (!this.sseData(ctx, chunk('finish', {}, answer.finishReason))) {
      return;
    }
    const usageChunk = this.usageChunk(request, base, answer);
    if (usageChunk) {
      await this.pause();
      if (!this.sseData(ctx, usageChunk)) {
        return;
      }
    }
    this.bill(ctx, answer.usage);
    if (this.streamReportsUsage(request)) {
      ctx.record.reportedUsage = answer.usage;
    }
    this.sseData(ctx, '[DONE]');
    this.endSse(ctx);
  }

  protected async embeddings(ctx: RequestContext): Promise<void> {
    const behaviour = await this.admit(ctx, { generation: true });
    if (!behaviour) {
      return;
    }
    const body = isRecord(ctx.body) ? ctx.body : {};
    const inputs = typeof body.input === 'string' ? [body.input] : body.input;
    if (typeof body.model !== 'string' || !Array.isArray(inputs) || inputs.length === 0) {
      this.sendError(ctx, {
        status: 400,
        message: "'input' and 'model' are required.",
        type: 'invalid_request_error',
        param: 'input',
        code: null,
      });
      return;
    }
    if (!this.isModelKnown(body.model)) {
      this.sendError(ctx, this.modelNotFoundError(body.model));
      return;
    }
    const requested = finiteNumber(body.dimensions);
    const dimensions =
      requested !== undefined && requested >= 1 ? Math.min(Math.floor(requested), MAX_EMBEDDING_DIMENSIONS) : 8;
    const texts = inputs.map((input: unknown) => (typeof input === 'string' ? input : JSON.stringify(input)));
    const tokens = behaviour.usage?.input ?? texts.reduce((sum, text) => sum + countWords(text), 0);
    const usage: ReportedUsage = { input: tokens, output: 0, cached: 0 };
    const base64 = body.encoding_format === 'base64';
    const data = texts.map((text, index) => {
      const vector = embeddingVector(text, dimensions);
      return {
        object: 'embedding',
        index,
        // The openai SDK asks for base64 by default and decodes it as little-endian float32.
        embedding: base64 ? Buffer.from(vector.buffer).toString('base64') : Array.from(vector),
      };
    });
    const sent = this.sendJson(
      ctx,
      200,
      {
        object: 'list',
        data,
        model: body.model,
        usage: { prompt_tokens: tokens, total_tokens: tokens },
      },
      this.rateLimitHeaders(ctx),
    );
    if (sent) {
      ctx.record.reportedUsage = usage;
      this.bill(ctx, usage);
    }
  }
  // ---- Responses API --------------------------------------------------------------------------

  /** The `usage` of a Responses-API answer. OpenRouter adds its cost. */
  protected responsesUsageBody(usage: ReportedUsage): Record<string, unknown> {
    return {
      input_tokens: usage.input,
      input_tokens_details: { cached_tokens: usage.cached },
      output_tokens: usage.output,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: usage.input + usage.output,
      ...(usage.cost !== undefined ? { cost: usage.cost } : {}),
    };
  }

  protected async responses(ctx: RequestContext): Promise<void> {
    const behaviour = await this.admit(ctx, { generation: true });
    if (!behaviour) return;
    const body = isRecord(ctx.body) ? ctx.body : {};
    if (typeof body.model !== 'string' || body.model.length === 0) {
      this.sendError(ctx, {
        status: 400,
        message: "Missing required parameter: 'model'.",
        type: 'invalid_request_error',
        param: 'model',
        code: 'missing_required_parameter',
      });
      return;
    }
    if (!this.isModelKnown(body.model)) {
      this.sendError(ctx, this.modelNotFoundError(body.model));
      return;
    }
    const model = body.model;
    const promptTexts = [...contentTexts(body.instructions), ...responsesInputTexts(body.input)];
    const plan = this.planReply(behaviour, finiteNumber(body.max_output_tokens));
    const usage = this.usageFor(behaviour, promptTexts, plan, model);
    const input: unknown[] = Array.isArray(body.input) ? body.input : [];
    const last: unknown = input[input.length - 1];
    const tools = Array.isArray(body.tools) ? body.tools : [];
    const call =
      isRecord(last) && last.type === 'function_call_output'
        ? undefined
        : toolCallFor(
            tools.flatMap((tool: unknown) =>
              isRecord(tool) && tool.type === 'function' && typeof tool.name === 'string'
                ? [{ name: tool.name, schema: tool.parameters }]
                : [],
            ),
          );
    const ending = behaviour.responseEnding ?? (plan.truncated ? 'incomplete' : 'completed');
    const id = `resp_${randomString(48, '0123456789abcdef')}`;
    const messageId = `msg_${randomString(48, '0123456789abcdef')}`;
    const item: Record<string, unknown> = call
      ? {
          type: 'function_call',
          id: `fc_${randomString(48, '0123456789abcdef')}`,
          call_id: call.id,
          name: call.name,
          arguments: call.arguments,
          status: 'completed',
        }
      : {
          type: 'message',
          id: messageId,
          status: ending === 'completed' ? 'completed' : 'incomplete',
          role: 'assistant',
          content: [{ type: 'output_text', text: plan.text, annotations: [], logprobs: [] }],
        };
    const response = (status: string, final: boolean): Record<string, unknown> => ({
      id,
      object: 'response',
      created_at: nowSeconds(),
      status,
      background: false,
      error: final && ending === 'failed' ? { code: 'server_error', message: 'The model failed to finish.' } : null,
      incomplete_details: final && ending === 'incomplete' ? { reason: 'max_output_tokens' } : null,
      instructions: typeof body.instructions === 'string' ? body.instructions : null,
      max_output_tokens: finiteNumber(body.max_output_tokens) ?? null,
      model,
      output: final ? [item] : [],
      parallel_tool_calls: true,
      previous_response_id: null,
      reasoning: { effort: null, summary: null },
      service_tier: 'default',
      store: body.store !== false,
      temperature: 1,
      text: { format: { type: 'text' } },
      tool_choice: 'auto',
      tools,
      top_p: 1,
      truncation: 'disabled',
      usage: final ? this.responsesUsageBody(usage) : null,
      user: null,
      metadata: {},
    });
    const finalStatus = ending === 'completed' ? 'completed' : ending;
    const finalResponse = response(finalStatus, true);
    this.storedResponses.set(id, finalResponse);
    if (body.stream !== true) {
      if (this.sendJson(ctx, 200, finalResponse, this.rateLimitHeaders(ctx))) {
        ctx.record.reportedUsage = usage;
        this.bill(ctx, usage);
      }
      return;
    }
    if (!this.openSse(ctx, this.rateLimitHeaders(ctx))) return;
    let sequence = 0;
    const send = (type: string, data: Record<string, unknown>): boolean =>
      this.sseEvent(ctx, type, { type, sequence_number: sequence++, ...data });
    const opening = response('in_progress', false);
    if (!send('response.created', { response: opening }) || !send('response.in_progress', { response: opening })) {
      return;
    }
    if (call) {
      const added = { ...item, arguments: '', status: 'in_progress' };
      if (!send('response.output_item.added', { output_index: 0, item: added })) return;
      for (const piece of cutInto(call.arguments, 3)) {
        await this.pause();
        if (!send('response.function_call_arguments.delta', { item_id: item.id, output_index: 0, delta: piece })) {
          return;
        }
      }
      send('response.function_call_arguments.done', { item_id: item.id, output_index: 0, arguments: call.arguments });
    } else {
      const part = { type: 'output_text', text: '', annotations: [], logprobs: [] };
      if (
        !send('response.output_item.added', { output_index: 0, item: { ...item, status: 'in_progress', content: [] } })
      ) {
        return;
      }
      send('response.content_part.added', { item_id: messageId, output_index: 0, content_index: 0, part });
      for (const piece of plan.pieces) {
        await this.pause();
        const delta = { item_id: messageId, output_index: 0, content_index: 0, delta: piece, logprobs: [] };
        if (!send('response.output_text.delta', delta)) return;
      }
      send('response.output_text.done', {
        item_id: messageId,
        output_index: 0,
        content_index: 0,
        text: plan.text,
        logprobs: [],
      });
      send('response.content_part.done', {
        item_id: messageId,
        output_index: 0,
        content_index: 0,
        part: { ...part, text: plan.text },
      });
    }
    send('response.output_item.done', { output_index: 0, item });
    await this.pause();
    if (!send(`response.${finalStatus}`, { response: finalResponse })) return;
    ctx.record.reportedUsage = usage;
    this.bill(ctx, usage);
    this.endSse(ctx);
  }

  // ---- legacy Completions ---------------------------------------------------------------------

  protected async legacyCompletions(ctx: RequestContext): Promise<void> {
    const behaviour = await this.admit(ctx, { generation: true });
    if (!behaviour) return;
    const body = isRecord(ctx.body) ? ctx.body : {};
    if (typeof body.model !== 'string' || body.prompt === undefined) {
      this.sendError(ctx, {
        status: 400,
        message: "'model' and 'prompt' are required.",
        type: 'invalid_request_error',
        param: 'prompt',
        code: null,
      });
      return;
    }
    const prompts = (Array.isArray(body.prompt) ? body.prompt : [body.prompt]).map(String);
    const plan = this.planReply(behaviour, finiteNumber(body.max_tokens));
    const usage = this.usageFor(behaviour, prompts, plan, body.model);
    const base = {
      id: `cmpl-${randomString(29)}`,
      object: 'text_completion',
      created: nowSeconds(),
      model: body.model,
    };
    const finish = plan.truncated ? 'length' : 'stop';
    if (body.stream !== true) {
      const sent = this.sendJson(
        ctx,
        200,
        {
          ...base,
          choices: [{ text: plan.text, index: 0, logprobs: null, finish_reason: finish }],
          usage: this.usageBody(usage),
        },
        this.rateLimitHeaders(ctx),
      );
      if (sent) {
        ctx.record.reportedUsage = usage;
        this.bill(ctx, usage);
      }
      return;
    }
    const includeUsage = isRecord(body.stream_options) && body.stream_options.include_usage === true;
    if (!this.openSse(ctx, this.rateLimitHeaders(ctx))) return;
    for (let index = 0; index < plan.pieces.length; index++) {
      const last = index === plan.pieces.length - 1;
      const choice = { text: plan.pieces[index], index: 0, logprobs: null, finish_reason: last ? finish : null };
      if (!this.sseData(ctx, { ...base, choices: [choice] })) return;
      await this.pause();
    }
    if (includeUsage && !this.sseData(ctx, { ...base, choices: [], usage: this.usageBody(usage) })) return;
    this.bill(ctx, usage);
    if (includeUsage) ctx.record.reportedUsage = usage;
    this.sseData(ctx, '[DONE]');
    this.endSse(ctx);
  }

  // ---- stored objects: files, batches, completions, responses ---------------------------------

  protected async listObjects<T>(
    ctx: RequestContext,
    store: Map<string, T>,
    view: (value: T) => Record<string, unknown> = (value) => value as Record<string, unknown>,
  ): Promise<void> {
    if (!(await this.admit(ctx, { generation: false }))) return;
    const data = [...store.values()].map(view);
    this.sendJson(ctx, 200, {
      object: 'list',
      data,
      first_id: data.length > 0 ? data[0].id : null,
      last_id: data.length > 0 ? data[data.length - 1].id : null,
      has_more: false,
    });
  }

  /** GET returns the stored object, DELETE removes it; a missing id is the provider's 404. */
  protected async storedObject(
    ctx: RequestContext,
    store: Map<string, Record<string, unknown>>,
    rawId: string,
    object: string,
  ): Promise<void> {
    if (!(await this.admit(ctx, { generation: false }))) return;
    const id = decodeURIComponent(rawId);
    const found = store.get(id);
    if (!found) {
      this.sendError(ctx, this.noSuch(object, id));
    } else if (ctx.method === 'DELETE') {
      store.delete(id);
      this.sendJson(ctx, 200, { id, object: `${object}.deleted`, deleted: true });
    } else {
      this.sendJson(ctx, 200, found);
    }
  }

  protected noSuch(object: string, id: string): CompatError {
    return {
      status: 404,
      message: `No ${object} found with id '${id}'.`,
      type: 'invalid_request_error',
      param: null,
      code: null,
    };
  }

  /** `POST /files` as multipart: `file` and `purpose`. */
  protected async uploadFile(ctx: RequestContext): Promise<void> {
    if (!(await this.admit(ctx, { generation: false }))) return;
    const file = ctx.form?.files.find((candidate) => candidate.field === 'file');
    const purpose = ctx.form?.fields.purpose;
    if (!file || !purpose) {
      this.sendError(ctx, {
        status: 400,
        message: "'file' and 'purpose' are required (multipart/form-data).",
        type: 'invalid_request_error',
        param: file ? 'purpose' : 'file',
        code: null,
      });
      return;
    }
    const object = this.fileObject(file.filename, file.bytes.length, purpose);
    this.storedFiles.set(String(object.id), { object, bytes: file.bytes });
    this.sendJson(ctx, 200, object);
  }

  protected fileObject(filename: string, bytes: number, purpose: string): Record<string, unknown> {
    return {
      id: `file-${randomString(22)}`,
      object: 'file',
      bytes,
      created_at: nowSeconds(),
      filename,
      purpose,
      status: 'processed',
      expires_at: null,
      status_details: null,
    };
  }

  private async storedFileObject(ctx: RequestContext, rawId: string): Promise<void> {
    if (!(await this.admit(ctx, { generation: false }))) return;
    const id = decodeURIComponent(rawId);
    const file = this.storedFiles.get(id);
    if (!file) {
      this.sendError(ctx, this.noSuch('file', id));
    } else if (ctx.method === 'DELETE') {
      this.storedFiles.delete(id);
      this.sendJson(ctx, 200, { id, object: 'file', deleted: true });
    } else {
      this.sendJson(ctx, 200, file.object);
    }
  }

  private async fileContent(ctx: RequestContext, rawId: string): Promise<void> {
    if (!(await this.admit(ctx, { generation: false }))) return;
    const id = decodeURIComponent(rawId);
    const file = this.storedFiles.get(id);
    if (file) {
      this.sendBody(ctx, 200, 'application/octet-stream', file.bytes);
    } else {
      this.sendError(ctx, this.noSuch('file', id));
    }
  }

  /** Batches are billed when they run, not here: creating one reports no usage. */
  private async createBatch(ctx: RequestContext): Promise<void> {
    if (!(await this.admit(ctx, { generation: false }))) return;
    const body = isRecord(ctx.body) ? ctx.body : {};
    if (typeof body.input_file_id !== 'string' || typeof body.endpoint !== 'string') {
      this.sendError(ctx, {
        status: 400,
        message: "'input_file_id' and 'endpoint' are required.",
        type: 'invalid_request_error',
        param: 'input_file_id',
        code: null,
      });
      return;
    }
    if (!this.storedFiles.has(body.input_file_id)) {
      this.sendError(ctx, this.noSuch('file', body.input_file_id));
      return;
    }
    const created = nowSeconds();
    const batch: Record<string, unknown> = {
      id: `batch_${randomString(24, '0123456789abcdef')}`,
      object: 'batch',
      endpoint: body.endpoint,
      errors: null,
      input_file_id: body.input_file_id,
      completion_window: typeof body.completion_window === 'string' ? body.completion_window : '24h',
      status: 'validating',
      output_file_id: null,
      error_file_id: null,
      created_at: created,
      in_progress_at: null,
      expires_at: created + 86_400,
      finalizing_at: null,
      completed_at: null,
      failed_at: null,
      expired_at: null,
      cancelling_at: null,
      cancelled_at: null,
      request_counts: { total: 0, completed: 0, failed: 0 },
      metadata: isRecord(body.metadata) ? body.metadata : null,
    };
    this.storedBatches.set(String(batch.id), batch);
    this.sendJson(ctx, 200, batch);
  }

  private async cancelBatch(ctx: RequestContext, rawId: string): Promise<void> {
    if (!(await this.admit(ctx, { generation: false }))) return;
    const id = decodeURIComponent(rawId);
    const batch = this.storedBatches.get(id);
    if (!batch) {
      this.sendError(ctx, this.noSuch('batch', id));
      return;
    }
    Object.assign(batch, { status: 'cancelling', cancelling_at: nowSeconds() });
    this.sendJson(ctx, 200, batch);
  }

  // ---- audio ----------------------------------------------------------------------------------

  /**
   * The usage a transcription reports, or undefined when the provider reports none (Groq).
   * OpenAI: `{ type: 'tokens', … }` for gpt-4o models, `{ type: 'duration', seconds }` for whisper.
   */
  protected transcriptionUsage(
    _model: string,
    _usage: ReportedUsage,
    _seconds: number,
  ): { body: Record<string, unknown>; usage: ReportedUsage } | undefined {
    return undefined;
  }

  /** `POST /audio/transcriptions` and `/audio/translations`: a multipart form with `file` and `model`. */
  protected async transcription(ctx: RequestContext): Promise<void> {
    const behaviour = await this.admit(ctx, { generation: true });
    if (!behaviour) return;
    const file = ctx.form?.files.find((candidate) => candidate.field === 'file');
    const model = ctx.form?.fields.model;
    if (!file || !model) {
      this.sendError(ctx, {
        status: 400,
        message: "'file' and 'model' are required (multipart/form-data).",
        type: 'invalid_request_error',
        param: file ? 'model' : 'file',
        code: null,
      });
      return;
    }
    const plan = this.planReply(behaviour, undefined);
    const usage = this.usageFor(behaviour, [], plan, model);
    // One second of "audio" per 1000 bytes uploaded, so whisper's duration is predictable.
    const seconds = Math.max(1, Math.ceil(file.bytes.length / 1000));
    const reported = this.transcriptionUsage(model, usage, seconds);
    const format = ctx.form?.fields.response_format ?? 'json';
    let sent: boolean;
    if (format === 'text') {
      sent = this.sendBody(ctx, 200, 'text/plain; charset=utf-8', Buffer.from(plan.text));
    } else if (format === 'verbose_json') {
      sent = this.sendJson(ctx, 200, {
        task: ctx.path.endsWith('/translations') ? 'translate' : 'transcribe',
        language: 'english',
        duration: seconds,
        text: plan.text,
        segments: [],
        ...(reported ? { usage: reported.body } : {}),
      });
    } else {
      sent = this.sendJson(ctx, 200, { text: plan.text, ...(reported ? { usage: reported.body } : {}) });
    }
    if (sent) {
      if (reported && format !== 'text') ctx.record.reportedUsage = reported.usage;
      this.bill(ctx, reported?.usage ?? usage);
    }
  }
}

/** Same text, same vector: derived from a hash so tests can compare embeddings. */
function embeddingVector(text: string, dimensions: number): Float32Array {
  const vector = new Float32Array(dimensions);
  let digest = createHash('sha256').update(text).digest();
  for (let i = 0; i < dimensions; i += 1) {
    if (i > 0 && i % digest.length === 0) {
      digest = createHash('sha256').update(digest).digest();
    }
    vector[i] = Math.round(((digest[i % digest.length] / 255) * 2 - 1) * 1e4) / 1e4;
  }
  return vector;
}
