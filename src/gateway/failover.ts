import { Inject, Injectable, OnModuleDestroy, Optional } from '@nestjs/common';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Dispatcher, errors as undiciErrors } from 'undici';
import { KEYWARD_CONFIG } from '../config/config.constants';
import type { KeywardConfig } from '../config/config';
import {
  usageKindOf,
  type ClassifiedError,
  type ProviderErrorType,
  type ProviderPlugin,
  type UsageCount,
} from '../plugin-system/provider-plugin';
import { ShutdownService } from '../lifecycle/shutdown.service';
import { MetricsService } from '../metrics/metrics.service';
import { LimitsService } from '../limits/limits.service';
import type { Reservation, UsageAmount, WorstCase } from '../limits/limits.types';
import { CHARS_PER_TOKEN, estimateInputTokens } from '../limits/worst-case';
import { GatewayProblem } from './gateway-problem';
import type { Call } from './gateway-call';
import { KeyPool, type PooledKey, type Unusable } from './key-pool';
import { passThrough, startRelay, type ProviderFailure } from './relay';
import { decodeBody, exchange, outgoingRequest, UpstreamPools } from './upstream';
import { UsageRecording } from './usage-record';

/** Provider answers after which the same request is tried on the next key. */
const FAILOVER_ON = new Set<ProviderErrorType>([
  'invalid_key',
  'rate_limited',
  'out_of_credit',
  'provider_error',
  'timeout',
]);
const MAX_ERROR_BODY = 256 * 1024;
/** Connection errors that happen before a request could reach the provider: always safe to retry. */
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH']);

type AttemptResult =
  | { done: true }
  | { done: false; type: ProviderErrorType; failure?: ProviderFailure; secret: string; mayHaveAccepted: boolean };

/**
 * Key choice and failover: the usable keys in order (priority, then weight), one attempt each
 * while the failure is one another key can fix and the provider cannot have accepted the work.
 * A key's health changes only on what the key itself caused; an answer that blames the request
 * goes to the client as it is (with the key masked).
 */
@Injectable()
export class Failover implements OnModuleDestroy {
  private readonly upstream = new UpstreamPools();

  constructor(
    private readonly pool: KeyPool,
    private readonly usage: UsageRecording,
    private readonly limits: LimitsService,
    @Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig,
    @Optional() shutdown?: ShutdownService,
    @Optional() private readonly metrics?: MetricsService,
  ) {
    // Provider connections close only after the calls in flight have drained.
    shutdown?.register('upstream', 'provider connections', () => this.upstream.close());
  }

  async onModuleDestroy(): Promise<void> {
    await this.upstream.close();
  }

  async forward(call: Call): Promise<void> {
    const now = Date.now();
    const all = this.pool.cachedKeys(call.provider) ?? (await this.pool.keys(call.provider));
    const reasons = new Map<Unusable, number>();
    const usable: PooledKey[] = [];
    for (const key of all) {
      const why = this.pool.unusable(key, now);
      if (why) reasons.set(why, (reasons.get(why) ?? 0) + 1);
      else usable.push(key);
    }
    if (usable.length === 0) return this.noKey(call, all.length, reasons);

    const order = this.pool.order(usable);
    const { failover, maxAttempts, retryAfterSend } = this.config.gateway;
    // A body streamed through can be sent once only.
    const attempts = failover && !call.stream ? Math.min(maxAttempts, order.length) : 1;
    let last: { failure: ProviderFailure; secret: string } | undefined;
    let lastType: ProviderErrorType | undefined;
    let tried = 0;
    let fullKeys = 0;
    let worst: Promise<WorstCase> | undefined;
    for (let i = 0; i < order.length && tried < attempts; i++) {
      const key = order[i];
      // A key may have run out while this request waited for another attempt.
      if (tried > 0 && this.pool.unusable(key, Date.now())) continue;
      const secret = this.pool.trySecretOf(key);
      if (secret === null) continue;
      // No limit on the key or the token (the usual case): nothing to reserve, nothing to wait for.
      const reservation = this.limits.applies(key.id, call.principal.id)
        ? await this.reserve(call, key, () => (worst ??= this.worstCase(call)))
        : undefined;
      if (reservation === 'key-full') {
        reasons.set('over-limit', (reasons.get('over-limit') ?? 0) + 1);
        this.metrics?.countLimitHit('key');
        fullKeys++;
        continue;
      }
      if (tried > 0) this.metrics?.countFailover(call.provider);
      tried++;
      const othersUsable = order.some((k) => k !== key && !this.pool.unusable(k, Date.now()));
      const outcome = await this.attempt(call, key, secret, tried, tried === attempts, othersUsable, reservation);
      if (outcome.done) return;
      if (outcome.failure) last = { failure: outcome.failure, secret: outcome.secret };
      lastType = outcome.type;
      if (outcome.mayHaveAccepted && !retryAfterSend) break;
      if (outcome.type === 'provider_error' || outcome.type === 'timeout') {
        // Backoff with jitter before the next key: a provider in trouble gets a moment.
        await sleep(Math.min(1000, 25 * 2 ** (tried - 1)) * (0.5 + Math.random()));
      }
    }
    // Every attempt failed with an error worth failing over for: the last provider answer is
    // passed through where there is one, else Keyward says why.
    if (last) return passThrough(call.res, last.failure, tried, last.secret);
    if (tried === 0) {
      return this.noKey(call, all.length, fullKeys > 0 ? reasons : new Map([['unhealthy', all.length]]));
    }
    throw new GatewayProblem(
      lastType === 'timeout' ? 504 : 502,
      lastType === 'timeout' ? 'upstream-timeout' : 'upstream-failed',
      'The provider did not answer',
      `${call.plugin.config.name} did not answer on ${tried} key(s).`,
    );
  }

  /**
   * One try on one key. `done` when the client has its answer (success, or an error another
   * key would not change), else what failed, for the next try.
   */
  private async attempt(
    call: Call,
    key: PooledKey,
    secret: string,
    attempt: number,
    isLast: boolean,
    othersUsable: boolean,
    reservation: Reservation | undefined,
  ): Promise<AttemptResult> {
    const started = performance.now();
    const outgoing = outgoingRequest(call);
    call.plugin.authorize(outgoing, secret, key.organizationId);
    this.pool.picked(key);
    key.inFlight++;
    let released = false;
    const release = () => {
      if (!released) {
        released = true;
        key.inFlight--;
      }
    };

    const outcome = await exchange(
      this.upstream.for(call.origin),
      {
        method: call.method as Dispatcher.HttpMethod,
        path: outgoing.path,
        headers: outgoing.headers,
        body: call.body ?? call.stream,
        headersTimeout: this.config.gateway.upstreamTimeoutMs,
        bodyTimeout: this.config.gateway.idleTimeoutMs,
      },
      {
        res: call.res,
        errorBodyLimit: MAX_ERROR_BODY,
        relay: (status, headers, upstream) => {
          this.pool.markSuccess(key);
          return startRelay(call, status, headers, attempt, upstream);
        },
      },
    );

    if (outcome.kind === 'unanswered') {
      const { error } = outcome;
      if (outcome.clientLeft) {
        // The client left: nothing is wrong with the key, and nobody is waiting for another try.
        this.pool.unpicked(key);
        void this.usage
          .attempt(
            call,
            key,
            attempt,
            started,
            {
              success: false,
              errorType: 'client_aborted',
              status: null,
              usage: this.abandonedUsage(call, 0),
              countedByLimits: reservation !== undefined,
            },
            release,
          )
          .then((record) => this.settle(reservation, record));
        return { done: true };
      }
      const code = (error as { code?: string }).code ?? '';
      const type: ProviderErrorType = error instanceof undiciErrors.HeadersTimeoutError ? 'timeout' : 'provider_error';
      if (reservation) this.limits.release(reservation);
      void this.usage.attempt(call, key, attempt, started, { success: false, errorType: type, status: null }, release);
      await this.pool.markFailure(key, type, undefined, error.message, othersUsable);
      return { done: false, type, secret, mayHaveAccepted: !NOT_SENT.has(code) };
    }

    if (outcome.kind === 'refused') {
      const { status, headers } = outcome;
      const body = decodeError(outcome.body, headers['content-encoding']);
      const classified = classify(call.plugin, status, headers, body);
      // A provider's error answer did no billable work.
      if (reservation) this.limits.release(reservation);
      void this.usage.attempt(
        call,
        key,
        attempt,
        started,
        { success: false, errorType: classified.type, status },
        release,
      );
      const failure: ProviderFailure = { status, headers, body };
      const keyCaused = FAILOVER_ON.has(classified.type);
      if (keyCaused) {
        await this.pool.markFailure(
          key,
          classified.type,
          classified.retryAfterMs,
          classified.message ?? `HTTP ${status}`,
          othersUsable,
        );
      } else {
        this.pool.unpicked(key);
      }
      if (this.config.gateway.failover && keyCaused && !isLast) {
        return { done: false, type: classified.type, failure, secret, mayHaveAccepted: false };
      }
      passThrough(call.res, failure, attempt, secret);
      return { done: true };
    }

    const { result } = outcome;
    // An abandoned stream still counts: the provider's usage where it came, else an estimate of
    // the input and the output relayed so far.
    const usage =
      result.complete || usageKindOf(call.target.endpoint) !== 'billable'
        ? result.usage
        : this.abandonedUsage(call, result.relayedDataBytes, result.usage);
    const record = await this.usage.attempt(
      call,
      key,
      attempt,
      started,
      {
        success: result.complete,
        errorType: result.complete ? null : 'client_aborted',
        status: outcome.status,
        usage,
        countedByLimits: reservation !== undefined,
      },
      release,
    );
    this.settle(reservation, record);
    return { done: true };
  }

  /**
   * Holds the call's worst case against the key's limit and the token's budgets (one round trip,
   * only when either has one). `key-full`: this key's limit is reached, another may serve; a
   * spent token budget ends the call with 429.
   */
  private async reserve(
    call: Call,
    key: PooledKey,
    worst: () => Promise<WorstCase>,
  ): Promise<Reservation | 'key-full'> {
    const reserved = await this.limits.reserve({
      keyId: key.id,
      accessTokenId: call.principal.id,
      worstCase: await worst(),
    });
    if (reserved.ok) return reserved;
    if (reserved.scope === 'key') return 'key-full';
    this.usage.refused({
      provider: call.provider,
      accessTokenId: call.principal.id,
      endpoint: call.target.endpoint.path,
      model: call.model,
      stream: call.streaming,
      status: 429,
      errorType: 'budget_exceeded',
    });
    throw new GatewayProblem(
      429,
      'budget-exceeded',
      'Budget reached',
      reserved.detail,
      reserved.resetAt
        ? { 'retry-after': String(Math.max(1, Math.ceil((reserved.resetAt.getTime() - Date.now()) / 1000))) }
        : {},
      'budget-exceeded',
    );
  }

  private worstCase(call: Call): Promise<WorstCase> {
    if (usageKindOf(call.target.endpoint) !== 'billable') {
      return Promise.resolve({ tokens: 0, usd: 0, requests: 1, unpriced: false });
    }
    return this.limits.worstCaseFor({
      provider: call.provider,
      model: call.model,
      body: call.json,
      rawLength: call.body?.length ?? Number(call.req.headers['content-length'] ?? 0),
      endpoint: call.target.endpoint.path,
    });
  }

  /** What an abandoned call is counted as when the provider's own count never came. */
  private abandonedUsage(call: Call, relayedDataBytes: number, partial?: UsageCount): UsageCount {
    // The provider's own partial count (Anthropic's message_start) wins where it has one.
    const inputTokens = partial?.inputTokens || estimateInputTokens(call.json, call.body?.length ?? 0);
    const outputTokens = Math.max(partial?.outputTokens ?? 0, Math.ceil(relayedDataBytes / CHARS_PER_TOKEN));
    return { inputTokens, outputTokens, totalTokens: inputTokens + outputTokens, model: call.model ?? undefined };
  }

  private settle(reservation: Reservation | undefined, record: { totalTokens: number; cost: number }): void {
    if (!reservation) return;
    const actual: UsageAmount = { tokens: record.totalTokens, usd: record.cost, requests: 1 };
    this.limits.settle(reservation, actual);
  }

  private noKey(call: Call, total: number, reasons: Map<Unusable, number>): void {
    const overLimit = reasons.get('over-limit') ?? 0;
    const limited =
      total > 0 &&
      overLimit > 0 &&
      [...reasons.keys()].every((r) => r === 'over-limit' || r === 'unhealthy' || r === 'expired');
    this.usage.refused({
      provider: call.provider,
      accessTokenId: call.principal.id,
      endpoint: call.target.endpoint.path,
      model: call.model,
      stream: call.streaming,
      status: limited ? 429 : 503,
      errorType: limited ? 'usage_exceeded' : 'no_key',
    });
    if (limited) {
      throw new GatewayProblem(
        429,
        'usage-exceeded',
        'Usage limit reached',
        `Every usable ${call.plugin.config.name} key has reached its usage limit; limits start over at their reset time.`,
      );
    }
    const cooling = reasons.get('cooling-down') ?? 0;
    const detail =
      total === 0
        ? `No active ${call.plugin.config.name} key is stored.`
        : `None of the ${total} ${call.plugin.config.name} key(s) can serve now: ${[...reasons.entries()].map(([r, n]) => `${n} ${r}`).join(', ')}.`;
    throw new GatewayProblem(
      503,
      'no-healthy-key',
      'No usable provider key',
      detail,
      cooling > 0 ? { 'retry-after': '1' } : {},
    );
  }
}

function classify(
  plugin: ProviderPlugin,
  status: number,
  headers: Record<string, unknown>,
  body: Buffer,
): ClassifiedError {
  const text = body.toString('utf8');
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Not JSON: classified from the raw text.
  }
  return plugin.classifyError(status, headers as Record<string, string>, parsed);
}

/** Error bodies are read (to classify and mask them), so a compressed one is decoded first. */
function decodeError(body: Buffer, encoding: string | string[] | undefined): Buffer {
  try {
    return decodeBody(body, encoding);
  } catch {
    return Buffer.from('{"error":{"message":"The provider answered with an unreadable error body."}}');
  }
}
