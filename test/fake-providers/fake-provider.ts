import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import * as zlib from 'node:zlib';
import { parseMultipart, type MultipartForm } from './multipart';

export type FakeProviderId = 'openai' | 'anthropic' | 'groq' | 'openrouter';

export interface UsageSpec {
  input: number;
  output: number;
  cached?: number;
  cost?: number;
}

/** Where and how a stream breaks off after it has started with a 200. */
export interface MidStreamErrorSpec {
  /** Content chunks written before the error chunk (default 1). */
  afterChunks?: number;
  /** OpenRouter: `error.code` (default 'server_error'); Anthropic: error type (default 'overloaded_error'). */
  code?: string | number;
  message?: string;
}

export interface ValidBehaviour {
  kind: 'valid';
  /** Reported exactly as given instead of the word-count estimate. */
  usage?: UsageSpec;
  /** Wait before answering. OpenRouter streams send headers and keep-alive comments meanwhile. */
  delayMs?: number;
  /** Replaces the generated "Hello from fake <provider>" text. */
  reply?: string;
  /** Streams only: break the stream off with the provider's in-stream error. */
  midStreamError?: MidStreamErrorSpec;
  /** Anthropic streams only: also emit an intermediate message_delta with a partial output count. */
  intermediateMessageDelta?: boolean;
  /**
   * Responses API: how the response ends — `completed` (default), `incomplete` (max output
   * tokens reached) or `failed` (a server error after output began). Usage is reported either way.
   */
  responseEnding?: 'completed' | 'incomplete' | 'failed';
}

export type KeyBehaviour =
  | ValidBehaviour
  | { kind: 'revoked' }
  | { kind: 'rate_limited'; retryAfterSeconds?: number }
  | { kind: 'out_of_credit'; variant?: 'spend_limit' | 'credit_balance' }
  | { kind: 'failing'; status?: number }
  | { kind: 'slow'; delayMs: number }
  | { kind: 'hang' }
  | { kind: 'restricted' };

/** The behaviours that end in an error answer, the only ones a provider has to render itself. */
export type ErrorBehaviour = Extract<
  KeyBehaviour,
  { kind: 'revoked' | 'rate_limited' | 'out_of_credit' | 'failing' | 'restricted' }
>;

export interface ReportedUsage {
  input: number;
  output: number;
  cached: number;
  cost?: number;
}

export interface RecordedRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  /** Path with the query string, as sent. */
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
  key: string | undefined;
  /** What the answer told the client it used; unset when the answer carried no usage. */
  reportedUsage?: ReportedUsage;
  /** 0 while no status line has been sent (a hanging or still-delayed request). */
  status: number;
  stream: boolean;
  at: number;
}

export interface FakeProviderOptions {
  port?: number;
  /** Served by the models endpoint; when given, requests for other models get the provider's 404. */
  models?: string[];
  /** Pause between stream chunks (default 5 ms); 0 writes them back to back. */
  chunkDelayMs?: number;
  /** Largest accepted request body (default 1 MiB); larger ones get the provider's 413. */
  bodyLimitBytes?: number;
}

/**
 * How a stream's bytes are cut before they are written: `every-byte` writes each byte on its own
 * (with a pause, so they arrive in separate reads), `random` in seeded pieces of 1..maxSize.
 */
export type StreamSplit = { mode: 'every-byte' } | { mode: 'random'; seed: number; maxSize?: number };

/** Content codings the fake can answer with although the client asked for `identity`. */
export type FakeCoding = 'gzip' | 'deflate' | 'br';

export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  method: string;
  path: string;
  query: URLSearchParams;
  body: unknown;
  /** The body's exact bytes (uploads, multipart forms). */
  rawBody: Buffer;
  /** Set for `multipart/form-data` requests. */
  form?: MultipartForm;
  key: string | undefined;
  record: RecordedRequest;
}

export interface AdmitOptions {
  /** Model calls; only these are refused for lack of credit, listings keep working as they do for real. */
  generation: boolean;
  /** Leave a valid key's delayMs to the caller (OpenRouter streams wait after sending headers). */
  deferValidDelay?: boolean;
}

export interface ReplyPlan {
  text: string;
  /** The text cut into stream pieces, one per output token of the estimate. */
  pieces: string[];
  truncated: boolean;
}

const DEFAULT_BODY_LIMIT = 1024 * 1024;
const DEFAULT_CHUNK_DELAY_MS = 5;
/** Past this much discarded upload the socket is cut instead of drained, so memory and time stay bounded. */
const DRAIN_FACTOR = 16;

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

export function randomString(length: number, alphabet: string = ALNUM): string {
  const bytes = randomBytes(length);
  let out = '';
  for (let i = 0; i < length; i += 1) {
    out += alphabet[bytes[i] % alphabet.length];
  }
  return out;
}

export function countWords(text: string): number {
  return text.split(/\s+/).filter((word) => word.length > 0).length;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Text of a chat message content: a string, or an array of parts of which only text parts count. */
export function contentTexts(content: unknown): string[] {
  if (typeof content === 'string') {
    return [content];
  }
  if (!Array.isArray(content)) {
    return [];
  }
  return content.flatMap((part: unknown) => (isRecord(part) && typeof part.text === 'string' ? [part.text] : []));
}

/** Go-style duration as OpenAI and Groq print their rate-limit resets: `12ms`, `6s`, `1m26.4s`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) {
    return `${Math.max(0, Math.round(ms))}ms`;
  }
  const totalSeconds = ms / 1000;
  const minutes = Math.floor(totalSeconds / 60);
  const seconds = Number((totalSeconds - minutes * 60).toFixed(3));
  return minutes > 0 ? `${minutes}m${seconds}s` : `${seconds}s`;
}

/** Keeps float noise out of reported USD amounts so tests can compare them exactly. */
export function roundUsd(value: number): number {
  return Math.round(value * 1e12) / 1e12;
}

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

export function maskKey(key: string): string {
  return key.length <= 12 ? key : `${key.slice(0, 11)}...${key.slice(-3)}`;
}

interface Sleeper {
  timer: NodeJS.Timeout;
  resolve: () => void;
}

interface BodyWriter {
  write(bytes: Buffer): void;
  end(): void;
}

export abstract class FakeProvider {
  abstract readonly id: FakeProviderId;
  readonly requests: RecordedRequest[] = [];
  /**
   * Requests that reached the provider's organisation / admin API (OpenAI `/v1/organization/…`,
   * Anthropic `/v1/organizations/…`, OpenRouter `/keys`), whoever sent them: a gateway test
   * asserts this stays empty.
   */
  readonly organizationRequests: RecordedRequest[] = [];
  chunkDelayMs: number;
  /** Answer every body compressed with this coding, whatever the request's Accept-Encoding says. */
  compressAnyway: FakeCoding | undefined;
  /** Cut every stream (SSE and binary) into these pieces; unset writes each event at once. */
  splitStream: StreamSplit | undefined;
  /**
   * Milliseconds between a stream's last event and the end of its body, as real providers
   * take: a client that closes on `data: [DONE]` leaves before the body ends.
   */
  streamEndDelayMs = 0;

  protected readonly models: string[];
  /** Only a caller-given model list is enforced, so ad-hoc model names work by default. */
  protected readonly enforceModels: boolean;
  /** Whether this provider puts a USD cost into its usage (only OpenRouter does). */
  protected readonly reportsCost: boolean = false;

  private readonly keys = new Map<string, KeyBehaviour>();
  private readonly requestCounts = new Map<string, number>();
  private readonly tokenCounts = new Map<string, number>();
  private readonly sleepers = new Set<Sleeper>();
  private readonly sockets = new Set<Socket>();
  private readonly events = new EventEmitter();
  private readonly pendingContexts = new WeakMap<ServerResponse, RequestContext>();
  private readonly server: Server;
  private readonly bodyLimitBytes: number;
  private readonly requestedPort: number;
  private port = 0;
  private closing: Promise<void> | undefined;

  protected constructor(options: FakeProviderOptions, defaultModels: string[]) {
    this.models = options.models ? [...options.models] : [...defaultModels];
    this.enforceModels = options.models !== undefined;
    this.chunkDelayMs = options.chunkDelayMs ?? DEFAULT_CHUNK_DELAY_MS;
    this.bodyLimitBytes = options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT;
    this.requestedPort = options.port ?? 0;
    this.server = createServer({ noDelay: true }, (req, res) => this.onRequest(req, res));
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  get origin(): string {
    if (this.port === 0) {
      throw new Error(`fake ${this.id} provider is not listening; call start() first`);
    }
    return `http://127.0.0.1:${this.port}`;
  }

  abstract get baseUrl(): string;

  async start(): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.requestedPort, '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  close(): Promise<void> {
    if (!this.closing) {
      this.closing = new Promise<void>((resolve) => {
        // Delayed handlers wake up, see the fake is closing and write nothing.
        for (const sleeper of this.sleepers) {
          clearTimeout(sleeper.timer);
          sleeper.resolve();
        }
        this.sleepers.clear();
        if (!this.server.listening) {
          resolve();
          return;
        }
        this.server.close(() => resolve());
        // Hanging requests and open streams would otherwise keep close() (and Jest) waiting.
        this.server.closeAllConnections();
        for (const socket of this.sockets) {
          socket.destroy();
        }
      });
    }
    return this.closing;
  }

  setKey(key: string, behaviour: KeyBehaviour): void {
    this.keys.set(key, behaviour);
  }

  deleteKey(key: string): void {
    this.keys.delete(key);
  }

  hasKey(key: string): boolean {
    return this.keys.has(key);
  }

  /** A new key in this provider's real format, registered with `behaviour` (valid by default). */
  generateKey(behaviour: KeyBehaviour = { kind: 'valid' }): string {
    const key = this.newKey();
    this.setKey(key, behaviour);
    return key;
  }

  /**
   * Back to the state right after start: no recorded requests, keys, counters or key-management
   * state. Call it between tests that share one fake.
   */
  reset(): void {
    this.requests.length = 0;
    this.organizationRequests.length = 0;
    this.compressAnyway = undefined;
    this.splitStream = undefined;
    this.streamEndDelayMs = 0;
    this.keys.clear();
    this.requestCounts.clear();
    this.tokenCounts.clear();
  }

  /** Resolves once `count` requests have been recorded (hanging ones included). */
  waitForRequests(count: number, timeoutMs = 2000): Promise<RecordedRequest[]> {
    if (this.requests.length >= count) {
      return Promise.resolve(this.requests.slice(0, count));
    }
    return new Promise((resolve, reject) => {
      const onRequest = (): void => {
        if (this.requests.length >= count) {
          clearTimeout(timer);
          this.events.off('request', onRequest);
          resolve(this.requests.slice(0, count));
        }
      };
      const timer = setTimeout(() => {
        this.events.off('request', onRequest);
        reject(new Error(`fake ${this.id}: ${this.requests.length}/${count} requests recorded`));
      }, timeoutMs);
      this.events.on('request', onRequest);
    });
  }

  // ---- provider hooks -------------------------------------------------------------------------

  protected abstract readonly displayName: string;

  /** A fresh key in the provider's format (not yet registered). */
  protected abstract newKey(): string;

  /** The key the request presents, read from where this provider takes it. */
  protected abstract presentedKey(req: IncomingMessage): string | undefined;

  protected abstract route(ctx: RequestContext): Promise<void>;

  /** Whether a path belongs to the organisation / admin API (recorded in organizationRequests). */
  protected isOrganizationPath(_path: string): boolean {
    return false;
  }

  protected abstract answerAuthFailure(ctx: RequestContext, reason: 'missing' | 'unknown'): void;

  protected abstract answerBehaviour(ctx: RequestContext, behaviour: ErrorBehaviour): void;

  protected abstract answerBodyTooLarge(ctx: RequestContext): void;

  protected abstract answerInvalidJson(ctx: RequestContext): void;

  protected abstract answerInternalError(ctx: RequestContext): void;

  /** Headers every answer of this provider carries (request ids and the like). */
  protected defaultHeaders(_ctx: RequestContext): Record<string, string> {
    return {};
  }

  /** USD the provider charges for a call; only consulted when reportsCost is set. */
  protected costFor(_model: string, _input: number, _output: number): number {
    return 0;
  }

  /** Called once per successful model call, whether or not the answer carried the usage. */
  protected onBilled(_key: string | undefined, _usage: ReportedUsage): void {}

  /** What a key currently does; subclasses overlay their key-management state. */
  protected behaviourOf(key: string): KeyBehaviour | undefined {
    return this.keys.get(key);
  }

  // ---- helpers for providers ------------------------------------------------------------------

  protected isModelKnown(model: string): boolean {
    return !this.enforceModels || this.models.includes(model);
  }

  protected requestCount(key: string | undefined): number {
    return key === undefined ? 0 : (this.requestCounts.get(key) ?? 0);
  }

  protected tokensUsed(key: string | undefined): number {
    return key === undefined ? 0 : (this.tokenCounts.get(key) ?? 0);
  }

  /** Answers missing and unknown keys itself; returns the behaviour of a known key. */
  protected authenticate(ctx: RequestContext): KeyBehaviour | undefined {
    if (ctx.key === undefined) {
      this.answerAuthFailure(ctx, 'missing');
      return undefined;
    }
    const behaviour = this.behaviourOf(ctx.key);
    if (!behaviour) {
      this.answerAuthFailure(ctx, 'unknown');
    }
    return behaviour;
  }

  /**
   * Plays a known key's behaviour. Returns the behaviour to answer with when the request should
   * succeed; otherwise it has answered (or deliberately not answered) and returns undefined.
   */
  protected async applyBehaviour(
    ctx: RequestContext,
    behaviour: KeyBehaviour,
    options: AdmitOptions,
  ): Promise<ValidBehaviour | undefined> {
    switch (behaviour.kind) {
      case 'valid':
        if (!options.deferValidDelay) {
          await this.sleep(behaviour.delayMs ?? 0);
        }
        return this.alive(ctx) ? behaviour : undefined;
      case 'slow':
        await this.sleep(behaviour.delayMs);
        return this.alive(ctx) ? { kind: 'valid' } : undefined;
      case 'hang':
        // Nothing is written; close() or the client ends the connection.
        return undefined;
      case 'out_of_credit':
        if (!options.generation) {
          return { kind: 'valid' };
        }
        this.answerBehaviour(ctx, behaviour);
        return undefined;
      default:
        this.answerBehaviour(ctx, behaviour);
        return undefined;
    }
  }

  protected async admit(ctx: RequestContext, options: AdmitOptions): Promise<ValidBehaviour | undefined> {
    const behaviour = this.authenticate(ctx);
    return behaviour ? this.applyBehaviour(ctx, behaviour, options) : undefined;
  }

  /** False once the client left, the answer was finished or the fake is closing. */
  protected alive(ctx: RequestContext): boolean {
    const { res } = ctx;
    return this.closing === undefined && !res.writableEnded && !res.destroyed && !(res.socket?.destroyed ?? false);
  }

  protected sleep(ms: number): Promise<void> {
    if (!(ms > 0) || this.closing) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const sleeper: Sleeper = {
        timer: setTimeout(() => {
          this.sleepers.delete(sleeper);
          resolve();
        }, ms),
        resolve,
      };
      this.sleepers.add(sleeper);
    });
  }

  /** The pause between two stream chunks. */
  protected pause(): Promise<void> {
    return this.sleep(this.chunkDelayMs);
  }

  protected sendJson(
    ctx: RequestContext,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ): boolean {
    if (!this.alive(ctx)) {
      return false;
    }
    return this.sendBody(ctx, status, 'application/json', Buffer.from(JSON.stringify(body)), headers);
  }

  /** A whole body (JSON, text, audio), compressed when `compressAnyway` is set. */
  protected sendBody(
    ctx: RequestContext,
    status: number,
    contentType: string,
    bytes: Buffer,
    headers: Record<string, string> = {},
  ): boolean {
    if (!this.alive(ctx)) {
      return false;
    }
    const coding = this.compressAnyway;
    const payload = coding ? compressSync(coding, bytes) : bytes;
    ctx.record.status = status;
    ctx.res.writeHead(status, {
      ...this.defaultHeaders(ctx),
      ...headers,
      'content-type': contentType,
      'content-length': String(payload.length),
      ...(coding ? { 'content-encoding': coding } : {}),
    });
    ctx.res.end(payload);
    return true;
  }

  /** A streamed binary body (speech audio), cut as `splitStream` says. */
  protected async sendBinaryStream(
    ctx: RequestContext,
    contentType: string,
    pieces: Buffer[],
    headers: Record<string, string> = {},
  ): Promise<boolean> {
    if (!this.alive(ctx)) {
      return false;
    }
    ctx.record.status = 200;
    ctx.res.writeHead(200, {
      ...this.defaultHeaders(ctx),
      ...headers,
      'content-type': contentType,
      'transfer-encoding': 'chunked',
      ...(this.compressAnyway ? { 'content-encoding': this.compressAnyway } : {}),
    });
    const writer = this.writerFor(ctx);
    for (const piece of pieces) {
      if (!this.alive(ctx)) return false;
      writer.write(piece);
      await this.pause();
    }
    writer.end();
    return true;
  }

  /** Sends the status line and headers at once, so the client sees the stream open. */
  protected openSse(ctx: RequestContext, headers: Record<string, string> = {}): boolean {
    if (!this.alive(ctx)) {
      return false;
    }
    ctx.record.status = 200;
    ctx.res.writeHead(200, {
      ...this.defaultHeaders(ctx),
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      ...(this.compressAnyway ? { 'content-encoding': this.compressAnyway } : {}),
    });
    ctx.res.flushHeaders();
    this.writerFor(ctx);
    return true;
  }

  /** `data: <json>` (or a raw string such as `[DONE]`); false when the client is gone. */
  protected sseData(ctx: RequestContext, data: unknown): boolean {
    const payload = typeof data === 'string' ? data : JSON.stringify(data);
    return this.sseWrite(ctx, `data: ${payload}\n\n`);
  }

  protected sseEvent(ctx: RequestContext, event: string, data: unknown): boolean {
    return this.sseWrite(ctx, `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  protected sseComment(ctx: RequestContext, text: string): boolean {
    return this.sseWrite(ctx, `: ${text}\n\n`);
  }

  protected endSse(ctx: RequestContext): void {
    if (this.alive(ctx)) {
      this.writerFor(ctx).end();
    }
  }

  /** The answer text, cut to max_tokens words when the request sets a smaller limit. */
  protected planReply(behaviour: ValidBehaviour, maxTokens: number | undefined): ReplyPlan {
    const words = (behaviour.reply ?? `Hello from fake ${this.displayName}`)
      .split(/\s+/)
      .filter((word) => word.length > 0);
    const limit =
      maxTokens !== undefined && Number.isFinite(maxTokens) && maxTokens >= 0
        ? Math.min(words.length, Math.floor(maxTokens))
        : words.length;
    const pieces = words.slice(0, limit).map((word, index) => (index === 0 ? word : ` ${word}`));
    return { text: pieces.join(''), pieces, truncated: limit < words.length };
  }

  /** The spec's usage when a key has one, else words of the prompt + 3 in, pieces of the reply out. */
  protected usageFor(behaviour: ValidBehaviour, promptTexts: string[], plan: ReplyPlan, model: string): ReportedUsage {
    const spec = behaviour.usage;
    const input = spec ? spec.input : promptTexts.reduce((sum, t) => sum + countWords(t), 0) + 3;
    const output = spec ? spec.output : plan.pieces.length;
    const usage: ReportedUsage = { input, output, cached: spec?.cached ?? 0 };
    if (this.reportsCost) {
      usage.cost = roundUsd(spec?.cost ?? this.costFor(model, input, output));
    }
    return usage;
  }

  protected bill(ctx: RequestContext, usage: ReportedUsage): void {
    if (ctx.key !== undefined) {
      this.tokenCounts.set(ctx.key, this.tokensUsed(ctx.key) + usage.input + usage.output);
    }
    this.onBilled(ctx.key, usage);
  }

  // ---- request plumbing -----------------------------------------------------------------------

  private sseWrite(ctx: RequestContext, text: string): boolean {
    if (!this.alive(ctx)) {
      return false;
    }
    this.writerFor(ctx).write(Buffer.from(text, 'utf8'));
    return true;
  }

  private readonly writers = new WeakMap<ServerResponse, BodyWriter>();

  /**
   * The writer of a streamed answer: compresses (one zlib stream, flushed after every write so
   * events still arrive one by one) and cuts the bytes as `splitStream` says. Cut pieces are
   * written one per event-loop turn, in order, so the client really reads them separately.
   */
  private writerFor(ctx: RequestContext): BodyWriter {
    const existing = this.writers.get(ctx.res);
    if (existing) return existing;
    const res = ctx.res;
    const split = this.splitStream;
    const random = split?.mode === 'random' ? seededRandom(split.seed) : undefined;
    let queue = Promise.resolve();
    let ended = false;
    const send = (bytes: Buffer): void => {
      if (!split) {
        if (!res.destroyed) res.write(bytes);
        return;
      }
      const pieces: Buffer[] = [];
      for (let at = 0; at < bytes.length;) {
        const size = random ? 1 + Math.floor(random() * (split.mode === 'random' ? (split.maxSize ?? 9) : 1)) : 1;
        pieces.push(bytes.subarray(at, at + size));
        at += size;
      }
      for (const piece of pieces) {
        queue = queue.then(
          () =>
            new Promise<void>((resolve) => {
              if (!res.destroyed) res.write(piece);
              // One turn of the event loop per piece: the socket sends it and the reader polls.
              setImmediate(resolve);
            }),
        );
      }
    };
    const endDelayMs = this.streamEndDelayMs;
    const finish = (): void => {
      queue = queue
        .then(() => (endDelayMs > 0 ? new Promise<void>((resolve) => setTimeout(resolve, endDelayMs)) : undefined))
        .then(() => {
          if (!res.destroyed && !res.writableEnded) res.end();
        });
    };
    let writer: BodyWriter;
    const coding = this.compressAnyway;
    if (coding) {
      const compressor = createCompressor(coding);
      compressor.on('data', (bytes: Buffer) => send(bytes));
      compressor.on('end', finish);
      writer = {
        write: (bytes) => {
          if (ended) return;
          compressor.write(bytes);
          compressor.flush();
        },
        end: () => {
          if (ended) return;
          ended = true;
          compressor.end();
        },
      };
    } else {
      writer = {
        write: (bytes) => {
          if (!ended) send(bytes);
        },
        end: () => {
          if (ended) return;
          ended = true;
          finish();
        },
      };
    }
    this.writers.set(res, writer);
    return writer;
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    // A client that disconnects mid-answer must not crash the fake.
    res.on('error', () => undefined);
    req.on('error', () => undefined);
    this.handle(req, res).catch(() => {
      const ctx = this.pendingContexts.get(res);
      if (ctx && this.alive(ctx) && !res.headersSent) {
        this.answerInternalError(ctx);
      } else if (!res.writableEnded) {
        res.destroy();
      }
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const raw = await this.readBody(req);
    const contentType = String(req.headers['content-type'] ?? '');
    if (raw.aborted) {
      return;
    }
    const record: RecordedRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      url: `${url.pathname}${url.search}`,
      headers: { ...req.headers },
      body: undefined,
      key: this.presentedKey(req),
      status: 0,
      stream: false,
      at: Date.now(),
    };
    const ctx: RequestContext = {
      req,
      res,
      method: record.method,
      path: record.path,
      query: url.searchParams,
      body: undefined,
      rawBody: raw.bytes,
      key: record.key,
      record,
    };
    this.pendingContexts.set(res, ctx);
    this.requests.push(record);
    if (this.isOrganizationPath(record.path)) {
      this.organizationRequests.push(record);
    }
    if (record.key !== undefined) {
      this.requestCounts.set(record.key, this.requestCount(record.key) + 1);
    }
    this.events.emit('request', record);

    if (raw.tooLarge) {
      res.setHeader('connection', 'close');
      this.answerBodyTooLarge(ctx);
      return;
    }
    if (/^multipart\/form-data/i.test(contentType)) {
      const form = parseMultipart(raw.bytes, contentType);
      if (!form) {
        this.answerInvalidJson(ctx);
        return;
      }
      ctx.form = form;
      ctx.body = form.fields;
      record.body = { ...form.fields, ...form.describeFiles() };
      record.stream = form.fields.stream === 'true';
    } else if (/^application\/octet-stream/i.test(contentType)) {
      record.body = { bytes: raw.bytes.length };
    } else if (raw.text.trim().length > 0) {
      try {
        ctx.body = JSON.parse(raw.text) as unknown;
      } catch {
        this.answerInvalidJson(ctx);
        return;
      }
      record.body = ctx.body;
      record.stream = isRecord(ctx.body) && ctx.body.stream === true;
    }
    await this.route(ctx);
  }

  private readBody(
    req: IncomingMessage,
  ): Promise<{ text: string; bytes: Buffer; tooLarge: boolean; aborted: boolean }> {
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let tooLarge = false;
      let settled = false;
      const settle = (aborted: boolean): void => {
        if (!settled) {
          settled = true;
          const bytes = tooLarge ? Buffer.alloc(0) : Buffer.concat(chunks);
          resolve({ text: bytes.toString('utf8'), bytes, tooLarge, aborted });
        }
      };
      req.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > this.bodyLimitBytes) {
          tooLarge = true;
          chunks.length = 0;
          if (size > this.bodyLimitBytes * DRAIN_FACTOR) {
            req.destroy();
          }
          return;
        }
        chunks.push(chunk);
      });
      req.on('end', () => settle(false));
      req.on('close', () => settle(true));
    });
  }
}

function compressSync(coding: FakeCoding, bytes: Buffer): Buffer {
  if (coding === 'gzip') return zlib.gzipSync(bytes);
  if (coding === 'deflate') return zlib.deflateSync(bytes);
  return zlib.brotliCompressSync(bytes);
}

function createCompressor(coding: FakeCoding): zlib.Gzip | zlib.Deflate | zlib.BrotliCompress {
  if (coding === 'gzip') return zlib.createGzip();
  if (coding === 'deflate') return zlib.createDeflate();
  return zlib.createBrotliCompress();
}

/** Deterministic, so a failing split can be reproduced from the seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
