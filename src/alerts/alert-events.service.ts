import { Injectable, Logger } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';

export type AlertSeverity = 'info' | 'warning' | 'critical';

export interface AlertEvent {
  kind: string;
  severity: AlertSeverity;
  message: string;
  keyId?: string | null;
  details?: Record<string, unknown>;
}

export const ALERT_RAISED = 'alert.raised';

/**
 * Where the system says something needs a person: a dead key, a key out of credit, usage that
 * could not be written. Events are stored (the Alerts page and channels read them) and emitted.
 * The same kind for the same key is raised at most once per quiet period, so a failing key under
 * traffic does not write thousands of identical alerts.
 */
@Injectable()
export class AlertEventsService {
  private readonly logger = new Logger('Alerts');
  private readonly lastRaised = new Map<string, number>();
  private static readonly QUIET_MS = 5 * 60_000;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly events: EventEmitter2,
  ) {}

  async raise(event: AlertEvent): Promise<void> {
    const dedupe = `${event.kind}:${event.keyId ?? ''}`;
    const now = Date.now();
    if (now - (this.lastRaised.get(dedupe) ?? 0) < AlertEventsService.QUIET_MS) return;
    this.lastRaised.set(dedupe, now);
    this.logger.warn(`${event.severity}: ${event.message}`);
    try {
      await this.dataSource.query(
        `INSERT INTO alert_events (kind, severity, key_id, message, details) VALUES ($1, $2, $3, $4, $5)`,
        [event.kind, event.severity, event.keyId ?? null, event.message, event.details ?? null],
      );
    } catch (error) {
      // The database may be the very thing that failed; the log line above still says it.
      this.logger.error(`Alert could not be stored: ${(error as Error).message}`);
    }
    this.events.emit(ALERT_RAISED, event);
  }

  async recent(limit = 50): Promise<Record<string, unknown>[]> {
    return this.dataSource.query(
      `SELECT id, kind, severity, key_id AS "keyId", message, details, created_at AS "createdAt"
         FROM alert_events ORDER BY created_at DESC LIMIT $1`,
      [limit],
    );
  }
}
