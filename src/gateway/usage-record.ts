import { Injectable } from '@nestjs/common';
import { PricingService } from '../plugin-system/pricing.service';
import { costOf, type UsageCount } from '../plugin-system/provider-plugin';
import { UsageRecorder, type UsageRecord } from '../usage/usage-recorder';
import type { Call } from './gateway-call';
import type { PooledKey } from './key-pool';

export interface AttemptOutcome {
  success: boolean;
  errorType: string | null;
  status: number | null;
  usage?: UsageCount;
  /** The limits service settled this usage against the key's counter (see UsageRecord). */
  countedByLimits?: boolean;
}

/** Requests Keyward answered itself, for the usage reports: who, what, and why it was refused. */
export interface RefusedRequest {
  provider: string;
  accessTokenId: string | null;
  endpoint: string;
  model: string | null;
  stream: boolean;
  status: number;
  errorType: string;
}

/**
 * Turns what happened to a call into usage records for the batch writer. Nothing here waits
 * for the database: prices come from a cached table, the recorder queues.
 */
@Injectable()
export class UsageRecording {
  constructor(
    private readonly recorder: UsageRecorder,
    private readonly pricing: PricingService,
  ) {}

  /** One attempt on one key. `release` ends the key's in-flight count once the record counts. */
  attempt(
    call: Call,
    key: PooledKey,
    attempt: number,
    started: number,
    outcome: AttemptOutcome,
    release: () => void,
  ): Promise<UsageRecord> {
    const usage = outcome.usage;
    const model = usage?.model ?? call.model;
    const inputTokens = usage?.inputTokens ?? 0;
    const outputTokens = usage?.outputTokens ?? 0;
    // One object literal, every field in the same order as refused() writes it: the recorder
    // reads thousands of these, and objects of one shape keep its property loads monomorphic.
    const record: UsageRecord = {
      timestamp: new Date(),
      keyId: key.id,
      provider: call.provider,
      accessTokenId: call.principal.id,
      endpoint: call.target.endpoint.path,
      model,
      inputTokens,
      outputTokens,
      cachedInputTokens: usage?.cachedInputTokens ?? 0,
      totalTokens: usage?.totalTokens ?? inputTokens + outputTokens,
      cost: 0,
      unpriced: false,
      latencyMs: Math.round(performance.now() - started),
      success: outcome.success,
      errorType: outcome.errorType,
      status: outcome.status,
      attempt,
      stream: call.streaming,
      source: 'gateway',
      countedByLimits: outcome.countedByLimits === true,
    };
    // Prices are cached: most calls are priced here and now, without a promise in between.
    const table = usage ? this.pricing.freshTable(call.provider) : undefined;
    if (!usage || table) {
      if (usage && table) {
        const c = costOf(usage, table, model ?? '');
        record.cost = c.cost;
        record.unpriced = c.unpriced;
      }
      this.recorder.record(record);
      release();
      return Promise.resolve(record);
    }
    return this.pricing
      .cost(call.provider, model ?? '', usage)
      .then(
        (c) => {
          record.cost = c.cost;
          record.unpriced = c.unpriced;
        },
        () => {
          record.unpriced = true;
        },
      )
      .then(() => {
        this.recorder.record(record);
        return record;
      })
      .finally(release);
  }

  /** A request Keyward answered itself (no key, limit reached, rate limited): counted, not billed. */
  refused(refusal: RefusedRequest): void {
    this.recorder.record({
      timestamp: new Date(),
      keyId: null,
      provider: refusal.provider,
      accessTokenId: refusal.accessTokenId,
      endpoint: refusal.endpoint,
      model: refusal.model,
      inputTokens: 0,
      outputTokens: 0,
      cachedInputTokens: 0,
      totalTokens: 0,
      cost: 0,
      unpriced: false,
      latencyMs: 0,
      success: false,
      errorType: refusal.errorType,
      status: refusal.status,
      attempt: 0,
      stream: refusal.stream,
      source: 'gateway',
      countedByLimits: false,
    });
  }
}
