import { Injectable, Logger } from '@nestjs/common';
import { OnEvent } from '@nestjs/event-emitter';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { conflict, notFound } from '../common/problem';
import { AlertDeliveryService } from './alert-delivery.service';
import { REPORT_GENERATED, reportMessage, type ReportGeneratedEvent } from './alert-messages';
import type { AlertState } from './alert.types';
import type { ListAlertsQuery } from './dto/list-alerts.query';

export interface AlertView {
  id: string;
  ruleId: string | null;
  ruleName: string | null;
  kind: string;
  severity: string;
  state: AlertState;
  message: string;
  subjectType: string | null;
  subjectId: string | null;
  details: Record<string, unknown>;
  conditionActive: boolean;
  openedAt: Date;
  acknowledgedAt: Date | null;
  acknowledgedBy: string | null;
  resolvedAt: Date | null;
  resolvedBy: string | null;
}

const SELECT = `SELECT a.id, a.rule_id AS "ruleId", r.name AS "ruleName", a.kind, a.severity, a.state, a.message,
  a.subject_type AS "subjectType", a.subject_id AS "subjectId", a.details, a.condition_active AS "conditionActive",
  a.opened_at AS "openedAt", a.acknowledged_at AS "acknowledgedAt", a.acknowledged_by AS "acknowledgedBy",
  a.resolved_at AS "resolvedAt", a.resolved_by AS "resolvedBy"
  FROM alerts a LEFT JOIN alert_rules r ON r.id = a.rule_id`;

/** How long the navigation's open-alert count may be stale. */
const COUNT_TTL_MS = 5_000;

/** The alert history: what fired, who acknowledged it, what resolved. */
@Injectable()
export class AlertsService {
  private readonly logger = new Logger('Alerts');
  private cachedCount: { value: number; at: number } | undefined;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly delivery: AlertDeliveryService,
  ) {}

  async list(query: ListAlertsQuery): Promise<{ alerts: AlertView[]; total: number }> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, value: unknown) => {
      params.push(value);
      where.push(sql.replace('?', `$${params.length}`));
    };
    if (query.state) add('a.state = ?', query.state);
    if (query.severity) add('a.severity = ?', query.severity);
    if (query.kind) add('a.kind = ?', query.kind);
    if (query.from) add('a.opened_at >= ?', new Date(query.from));
    if (query.to) add('a.opened_at <= ?', endOf(query.to));
    const clause = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const [{ total }] = await this.dataSource.query(`SELECT count(*)::int AS total FROM alerts a ${clause}`, params);
    const alerts = await this.dataSource.query(
      `${SELECT} ${clause} ORDER BY a.opened_at DESC, a.id LIMIT ${query.pageSize} OFFSET ${(query.page - 1) * query.pageSize}`,
      params,
    );
    return { alerts, total };
  }

  async get(id: string): Promise<AlertView> {
    const [alert] = await this.dataSource.query(`${SELECT} WHERE a.id = $1`, [id]);
    if (!alert) throw notFound('Alert', id);
    return alert;
  }

  async acknowledge(id: string, actor: string | null): Promise<AlertView> {
    const alert = await this.get(id);
    if (alert.state !== 'open') {
      throw conflict('alert-not-open', 'Alert is not open', `This alert is already ${alert.state}.`);
    }
    await this.dataSource.query(
      `UPDATE alerts SET state = 'acknowledged', acknowledged_at = now(), acknowledged_by = $2 WHERE id = $1 AND state = 'open'`,
      [id, actor],
    );
    this.countChanged();
    return this.get(id);
  }

  /**
   * Closes an alert by hand. While its condition still holds the rule stays quiet for it (it
   * fired once already); once the condition clears, the rule re-arms as usual.
   */
  async resolve(id: string, actor: string | null): Promise<AlertView> {
    const alert = await this.get(id);
    if (alert.state === 'resolved') throw conflict('alert-resolved', 'Alert already resolved');
    await this.dataSource.query(
      `UPDATE alerts SET state = 'resolved', resolved_at = now(), resolved_by = $2 WHERE id = $1 AND state <> 'resolved'`,
      [id, actor],
    );
    this.countChanged();
    return this.get(id);
  }

  /** Open (not yet acknowledged) alerts, for the navigation badge; cached a few seconds. */
  async openCount(): Promise<number> {
    if (this.cachedCount && Date.now() - this.cachedCount.at < COUNT_TTL_MS) return this.cachedCount.value;
    const [{ count }] = await this.dataSource.query(`SELECT count(*)::int AS count FROM alerts WHERE state = 'open'`);
    this.cachedCount = { value: count, at: Date.now() };
    return count;
  }

  countChanged(): void {
    this.cachedCount = undefined;
  }

  /** A generated report goes to every enabled channel that asked for reports. */
  @OnEvent(REPORT_GENERATED)
  async onReportGenerated(report: ReportGeneratedEvent): Promise<void> {
    try {
      const rows: { id: string }[] = await this.dataSource.query(
        `SELECT id FROM alert_channels WHERE enabled AND reports`,
      );
      const queued = await this.delivery.enqueue(
        this.dataSource,
        rows.map((r) => r.id),
        'report',
        reportMessage(report),
        { reportId: report.id },
      );
      if (queued > 0) this.delivery.kick();
    } catch (error) {
      this.logger.error(`Report ${report.id} could not be queued for delivery: ${(error as Error).message}`);
    }
  }
}

/** A bare date as `to` means the whole of that day. */
function endOf(value: string): Date {
  return /^\d{4}-\d{2}-\d{2}$/.test(value) ? new Date(Date.parse(`${value}T00:00:00Z`) + 86_399_999) : new Date(value);
}
