import { Inject, Injectable, Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import type { PostgresDataSourceOptions } from 'typeorm/driver/postgres/PostgresDataSourceOptions';
import { KEYWARD_CONFIG } from '../config/config.constants';
import type { KeywardConfig } from '../config/config';

/** While the database is down, how long a client is told to wait before trying again. */
const RETRY_AFTER_SECONDS = 5;
const PROBE_UP_MS = 2_000;
const PROBE_DOWN_MS = 500;
const PROBE_TIMEOUT_MS = 2_000;
/** How long a cache load may take before the cache answers from its last good value. */
const CACHE_QUERY_TIMEOUT_MS = 3_000;

/** The database cannot answer and the cache has nothing (or nothing recent enough) to serve. */
export class DatabaseUnavailableError extends Error {
  constructor(
    readonly retryAfterSeconds: number,
    detail = 'The database is unreachable and nothing cached can answer this request.',
  ) {
    super(detail);
    this.name = 'DatabaseUnavailableError';
  }
}

/**
 * Whether PostgreSQL answers, as one shared fact: a probe on its own connection (so a hung
 * server cannot tie up the pool) every 2 s while up and every 0.5 s while down, plus what the
 * caches and the usage writer report when a query fails (a slow answer alone is not an outage). Every cache asks `canServeStale()`
 * before answering from a last good value: during an outage the gateway keeps serving for
 * `KEYWARD_OUTAGE_SERVE_WINDOW_MS`, then answers 503 with `retry-after`. One log line per change.
 */
@Injectable()
export class DatabaseHealth implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('Database');
  private state: 'up' | 'down' = 'up';
  private downSinceMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private closing = false;
  private probeClient: Client | undefined;
  private probing: Promise<boolean> | undefined;
  /** Probes in a row that got no answer in time. */
  private missed = 0;
  private readonly listeners: ((up: boolean) => void)[] = [];

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig,
  ) {}

  get up(): boolean {
    return this.state === 'up';
  }

  /** Since when the database is unreachable; null while it is up. */
  get downSince(): Date | null {
    return this.state === 'down' ? new Date(this.downSinceMs) : null;
  }

  get retryAfterSeconds(): number {
    return RETRY_AFTER_SECONDS;
  }

  /** Whether a last good cached value may still answer: the database is up, or down within the window. */
  canServeStale(now = Date.now()): boolean {
    return this.state === 'up' || now - this.downSinceMs <= this.config.durability.outageServeWindowMs;
  }

  /** The error a cache throws when it has nothing it may serve. */
  unavailable(): DatabaseUnavailableError {
    return new DatabaseUnavailableError(RETRY_AFTER_SECONDS);
  }

  /** Called with `true` when the database came back, `false` when it went. */
  onChange(listener: (up: boolean) => void): void {
    this.listeners.push(listener);
  }

  /**
   * A cache load that may not wait longer than `timeoutMs` (a hung server never answers): past
   * it the promise rejects, the database counts as down, and the cache serves its last good value.
   */
  guard<T>(query: Promise<T>, timeoutMs = CACHE_QUERY_TIMEOUT_MS): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        // Slow is not down (a busy server): this request is served from the cache, and the probe
        // checks now whether the server answers at all.
        this.probeSoon();
        reject(new Error(`query timeout: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      query.then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(error instanceof Error ? error : new Error(String(error)));
        },
      );
    });
  }

  /**
   * A query failed. A refused or dropped connection means the server is gone: down at once.
   * Anything else that looks like the connection (a timeout, a pool that could not connect in
   * time) may be a busy server: the probe decides.
   */
  reportFailure(error: unknown): void {
    if (!isConnectionError(error)) return;
    if (isDefinitelyGone(error)) this.set('down', (error as Error).message);
    else this.probeSoon();
  }

  onModuleInit(): void {
    this.schedule(PROBE_UP_MS);
  }

  onModuleDestroy(): void {
    this.closing = true;
    clearTimeout(this.timer);
    this.dropProbeClient();
  }

  /**
   * Checks now on the probe's own long-lived connection (a new connection per probe would cost a
   * SCRAM handshake each time); resolves with the state after the check. Down after a refused
   * or dropped connection, or after two probes in a row got no answer in time.
   */
  async probe(): Promise<boolean> {
    if (this.probing) return this.probing;
    this.probing = this.check().finally(() => (this.probing = undefined));
    return this.probing;
  }

  private async check(): Promise<boolean> {
    const url = (this.dataSource.options as PostgresDataSourceOptions).url;
    if (!url || this.closing) return this.up;
    try {
      if (!this.probeClient) {
        const client = new Client({
          connectionString: url,
          connectionTimeoutMillis: PROBE_TIMEOUT_MS,
          query_timeout: PROBE_TIMEOUT_MS,
          application_name: 'keyward-health-probe',
        });
        client.on('error', () => this.dropProbeClient());
        this.probeClient = client;
        await client.connect();
      }
      await this.probeClient.query('SELECT 1');
      this.missed = 0;
      this.set('up');
    } catch (error) {
      this.dropProbeClient();
      this.missed++;
      if (isDefinitelyGone(error) || this.missed >= 2) this.set('down', (error as Error).message);
    }
    return this.up;
  }

  private dropProbeClient(): void {
    const client = this.probeClient;
    this.probeClient = undefined;
    if (!client) return;
    (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
    void client.end().catch(() => undefined);
  }

  private probeSoon(): void {
    if (this.closing || this.state === 'down') return;
    void this.probe();
  }

  private schedule(delayMs: number): void {
    if (this.closing) return;
    this.timer = setTimeout(() => {
      void this.probe().finally(() => this.schedule(this.up ? PROBE_UP_MS : PROBE_DOWN_MS));
    }, delayMs);
    this.timer.unref();
  }

  private set(state: 'up' | 'down', reason?: string): void {
    if (state === this.state || this.closing) return;
    this.state = state;
    if (state === 'down') {
      this.downSinceMs = Date.now();
      this.logger.error(
        `PostgreSQL is unreachable (${reason ?? 'no answer'}); serving from caches for up to ${Math.round(this.config.durability.outageServeWindowMs / 1000)} s and buffering usage`,
      );
      // Check again soon rather than at the "up" pace.
      clearTimeout(this.timer);
      this.schedule(PROBE_DOWN_MS);
    } else {
      this.logger.log(`PostgreSQL is reachable again after ${Date.now() - this.downSinceMs} ms`);
    }
    for (const listener of this.listeners) listener(state === 'up');
  }
}

/** A refused or dropped connection, or a server shutting down: no doubt it is gone. */
function isDefinitelyGone(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: string }).code;
  if (code && /^(08|57P0[1-3])/.test(code)) return true;
  if (code && ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND'].includes(code)) return true;
  return /connection terminated|ECONNREFUSED|ECONNRESET|Connection ended/i.test(error.message);
}

/** Errors that mean "no server to talk to", as opposed to a query the server refused. */
export function isConnectionError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: string }).code;
  if (code && /^(08|57P0[1-3])/.test(code)) return true; // connection exceptions; admin/crash shutdown
  if (code && ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND'].includes(code))
    return true;
  return /connection terminated|timeout|ECONNREFUSED|ECONNRESET|Connection ended|not queryable|closed/i.test(
    error.message,
  );
}
