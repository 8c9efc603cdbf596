import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, EntityManager } from 'typeorm';
import { KEYWARD_CONFIG } from '../config/config.constants';
import type { KeywardConfig } from '../config/config';
import { AlertChannelsService } from './alert-channels.service';
import { send, type OutgoingMessage } from './channel-senders';

export type DeliveryPurpose = 'alert' | 'resolved' | 'test' | 'report';

interface DueDelivery {
  id: string;
  channel_id: string;
  purpose: DeliveryPurpose;
  payload: OutgoingMessage;
  attempts: number;
}

/** How long an instance holds a delivery it is sending; past it, another may take it over. */
const LEASE_SECONDS = 60;
const BATCH = 20;

/**
 * The outbox: deliveries are rows written in the same transaction as what they announce, then
 * sent by whichever instance claims them first (`FOR UPDATE SKIP LOCKED`), with growing pauses
 * between failed attempts. Each attempt is logged with its status code.
 */
@Injectable()
export class AlertDeliveryService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('AlertDelivery');
  private timer: NodeJS.Timeout | undefined;
  private pumping: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly channels: AlertChannelsService,
    @Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig,
  ) {}

  onApplicationBootstrap(): void {
    this.timer = setInterval(() => this.kick(), this.config.alerts.deliveryPollMs);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.pumping;
  }

  /** Queues one message per channel, in the caller's transaction when it has one. */
  async enqueue(
    manager: EntityManager | DataSource,
    channelIds: string[],
    purpose: DeliveryPurpose,
    message: OutgoingMessage,
    refs: { alertId?: string; reportId?: string } = {},
  ): Promise<number> {
    if (channelIds.length === 0) return 0;
    const rows: unknown[] = await manager.query(
      `INSERT INTO alert_deliveries (channel_id, purpose, alert_id, report_id, payload)
       SELECT c.id, $2, $3, $4, $5 FROM alert_channels c WHERE c.id = ANY($1) AND c.enabled
       ON CONFLICT DO NOTHING RETURNING id`,
      [channelIds, purpose, refs.alertId ?? null, refs.reportId ?? null, message],
    );
    return rows.length;
  }

  /** Sends what is due now; concurrent calls coalesce into one more round. */
  kick(): void {
    if (this.stopped) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = this.pump()
      .catch((error: Error) => this.logger.error(`Delivering alerts failed: ${error.message}`))
      .finally(() => {
        this.pumping = undefined;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  /** Resolves once nothing due is left (tests and `send test` wait on it). */
  async drain(): Promise<void> {
    while (this.pumping) await this.pumping;
    await this.pump();
  }

  private async pump(): Promise<void> {
    if (!this.dataSource.isInitialized) return;
    for (;;) {
      // TypeORM answers an UPDATE … RETURNING as [rows, count].
      const [due]: [DueDelivery[], number] = await this.dataSource.query(
        `UPDATE alert_deliveries d SET locked_until = now() + interval '${LEASE_SECONDS} seconds', attempts = d.attempts + 1
          WHERE d.id IN (SELECT id FROM alert_deliveries
                          WHERE status = 'pending' AND next_attempt_at <= now()
                            AND (locked_until IS NULL OR locked_until < now())
                          ORDER BY next_attempt_at LIMIT ${BATCH} FOR UPDATE SKIP LOCKED)
          RETURNING d.id, d.channel_id, d.purpose, d.payload, d.attempts`,
      );
      if (due.length === 0) return;
      await Promise.all(due.map((d) => this.deliver(d)));
      if (due.length < BATCH || this.stopped) return;
    }
  }

  private async deliver(d: DueDelivery): Promise<void> {
    const started = Date.now();
    const target = await this.channels.target(d.channel_id);
    const result = !target
      ? { ok: false, statusCode: null, error: 'channel removed' }
      : !target.enabled
        ? { ok: false, statusCode: null, error: 'channel disabled' }
        : await send(target, d.payload, d.id);
    const { maxAttempts, retryBaseMs } = this.config.alerts;
    const final = result.ok || d.attempts >= maxAttempts || !target || !target.enabled;
    const retryMs = retryBaseMs * 4 ** (d.attempts - 1);
    await this.dataSource.query(
      `INSERT INTO alert_delivery_attempts (delivery_id, attempt, ok, status_code, error, duration_ms)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [d.id, d.attempts, result.ok, result.statusCode, result.error, Date.now() - started],
    );
    await this.dataSource.query(
      `UPDATE alert_deliveries SET status = $2, last_status_code = $3, last_error = $4, locked_until = NULL,
         delivered_at = CASE WHEN $2 = 'delivered' THEN now() END,
         next_attempt_at = CASE WHEN $2 = 'pending' THEN now() + $5::bigint * interval '1 millisecond' ELSE next_attempt_at END
       WHERE id = $1`,
      [d.id, result.ok ? 'delivered' : final ? 'failed' : 'pending', result.statusCode, result.error, retryMs],
    );
    if (!result.ok) {
      this.logger.warn(
        `Alert delivery ${d.id} to channel ${d.channel_id} failed (attempt ${d.attempts}): ${result.error}${final ? '; giving up' : `; retrying in ${retryMs} ms`}`,
      );
    }
  }

  /** Sends one message to one channel now, bypassing the queue's pauses; for "send test". */
  async sendNow(channelId: string, message: OutgoingMessage) {
    await this.enqueue(this.dataSource, [channelId], 'test', message);
    await this.drain();
    const [row] = await this.dataSource.query(
      `SELECT id, status, attempts, last_status_code AS "statusCode", last_error AS "error"
         FROM alert_deliveries WHERE channel_id = $1 AND purpose = 'test' ORDER BY created_at DESC LIMIT 1`,
      [channelId],
    );
    return row as { id: string; status: string; attempts: number; statusCode: number | null; error: string | null };
  }
}
