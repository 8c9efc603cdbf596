import { Injectable, Logger, OnModuleDestroy, OnModuleInit, Optional } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { Client } from 'pg';
import { DataSource, EntityManager } from 'typeorm';
import type { PostgresDataSourceOptions } from 'typeorm/driver/postgres/PostgresDataSourceOptions';
import { DatabaseHealth } from './database-health';

/**
 * PostgreSQL NOTIFY channels, one per kind of cached data. A change commits its NOTIFY in the
 * same transaction (see `ChangeFeedService.notify`), so every instance hears of it exactly when
 * it becomes visible. The payload is the changed row's id, or empty for "everything".
 */
export const CHANNELS = {
  keys: 'keyward_keys',
  tokens: 'keyward_tokens',
  prices: 'keyward_prices',
  limits: 'keyward_limits',
  alertRules: 'keyward_alert_rules',
} as const;
export type Channel = (typeof CHANNELS)[keyof typeof CHANNELS];

/** Caches trust what they hold this long while the feed listens, and only this long while it does not. */
export const LISTENING_TTL_MS = 30_000;
export const UNLISTENED_TTL_MS = 1_000;
/**
 * From this share of its life on, a cached entry still answers but is reloaded in the background
 * (tokens, key lists, prices), so that under steady traffic no call waits when it runs out.
 */
export const REFRESH_AHEAD_AT = 0.75;

const BACKOFF_FIRST_MS = 250;
const BACKOFF_MAX_MS = 5_000;
/** A hung server never closes the socket: the feed asks it something this often. */
const KEEPALIVE_MS = 5_000;
const KEEPALIVE_TIMEOUT_MS = 2_000;

type Handler = (payload: string) => void;

/**
 * The one change-notification connection of an instance: a dedicated pg client that LISTENs on
 * every channel a cache subscribed to, reconnects with backoff (0.25 s doubling to 5 s), and on
 * reconnecting tells every subscriber to reload everything (`onReconnect`): changes committed
 * while nobody listened were missed. While it is not listening, caches keep entries for
 * `UNLISTENED_TTL_MS` only (`ttl()`).
 */
@Injectable()
export class ChangeFeedService implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('ChangeFeed');
  private readonly handlers = new Map<string, Handler[]>();
  private readonly reconnectHandlers: (() => void)[] = [];
  private client: Client | null = null;
  private listening = false;
  private delay = BACKOFF_FIRST_MS;
  private timer: NodeJS.Timeout | undefined;
  private keepalive: NodeJS.Timeout | undefined;
  private closing = false;
  private lostAt = 0;
  private everConnected = false;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Optional() private readonly health?: DatabaseHealth,
  ) {}

  get isListening(): boolean {
    return this.listening;
  }

  /** How long a cache may keep an entry now. */
  ttl(listeningTtlMs = LISTENING_TTL_MS): number {
    return this.listening ? listeningTtlMs : UNLISTENED_TTL_MS;
  }

  /** Calls `handler` with each notification's payload on `channel`; returns an unsubscribe. */
  subscribe(channel: Channel, handler: Handler): () => void {
    const list = this.handlers.get(channel);
    if (list) list.push(handler);
    else {
      this.handlers.set(channel, [handler]);
      if (this.client && this.listening) void this.client.query(`LISTEN ${channel}`).catch(() => undefined);
    }
    return () => {
      const current = this.handlers.get(channel) ?? [];
      this.handlers.set(
        channel,
        current.filter((h) => h !== handler),
      );
    };
  }

  /**
   * Called when the connection is lost and again after every reconnect (not the first connect):
   * reload everything, a change may have been missed in between.
   */
  onReconnect(handler: () => void): void {
    this.reconnectHandlers.push(handler);
  }

  /** Sends a notification, in `manager`'s transaction when given (it is delivered at commit). */
  async notify(channel: Channel, payload = '', manager?: EntityManager): Promise<void> {
    await (manager ?? this.dataSource).query('SELECT pg_notify($1, $2)', [channel, payload]);
  }

  async onModuleInit(): Promise<void> {
    await this.connect();
  }

  async onModuleDestroy(): Promise<void> {
    this.closing = true;
    clearTimeout(this.timer);
    clearInterval(this.keepalive);
    const client = this.client;
    this.client = null;
    this.listening = false;
    await client?.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    if (this.closing) return;
    const url = (this.dataSource.options as PostgresDataSourceOptions).url;
    if (!url) {
      this.logger.warn('No database URL to LISTEN with; caches keep entries for 1 s only');
      return;
    }
    const client = new Client({
      connectionString: url,
      application_name: 'keyward-change-feed',
      connectionTimeoutMillis: 2_000,
      keepAlive: true,
    });
    let lost = false;
    const fail = (error?: Error) => {
      if (lost) return;
      lost = true;
      this.lose(client, error);
    };
    client.on('error', fail);
    client.on('end', () => fail());
    client.on('notification', (message) => {
      for (const handler of this.handlers.get(message.channel) ?? []) {
        try {
          handler(message.payload ?? '');
        } catch (error) {
          this.logger.error(`A ${message.channel} subscriber failed: ${(error as Error).message}`);
        }
      }
    });
    try {
      await client.connect();
      for (const channel of this.handlers.keys()) await client.query(`LISTEN ${channel}`);
    } catch (error) {
      fail(error as Error);
      return;
    }
    if (lost) return;
    if (this.closing) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.listening = true;
    this.delay = BACKOFF_FIRST_MS;
    this.keepalive = setInterval(() => this.ping(client, fail), KEEPALIVE_MS);
    this.keepalive.unref();
    if (this.everConnected) {
      this.logger.log(`Listening for changes again after ${Date.now() - this.lostAt} ms; reloading caches`);
      for (const handler of this.reconnectHandlers) handler();
    }
    this.everConnected = true;
  }

  private ping(client: Client, fail: (error?: Error) => void): void {
    const timer = setTimeout(() => fail(new Error('keepalive query timed out')), KEEPALIVE_TIMEOUT_MS);
    client
      .query('SELECT 1')
      .then(() => clearTimeout(timer))
      .catch((error: Error) => {
        clearTimeout(timer);
        fail(error);
      });
  }

  private lose(client: Client, error?: Error): void {
    clearInterval(this.keepalive);
    const wasListening = this.client === client;
    if (wasListening) {
      this.client = null;
      this.listening = false;
      this.lostAt = Date.now();
    }
    client.removeAllListeners('notification');
    // A hung socket may never answer `end`: destroy it.
    (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
    void client.end().catch(() => undefined);
    if (this.closing) return;
    if (wasListening) {
      this.logger.warn(`Change listener lost${error ? ` (${error.message})` : ''}; reconnecting with backoff`);
      if (error) this.health?.reportFailure(error);
      // Anything cached may be missing a change from now on; the caches shorten their lifetimes.
      for (const handler of this.reconnectHandlers) handler();
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.connect(), this.delay);
    this.timer.unref();
    this.delay = Math.min(this.delay * 2, BACKOFF_MAX_MS);
  }
}
