import { Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { OnEvent } from '@nestjs/event-emitter';
import { SchedulerRegistry } from '@nestjs/schedule';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { KEYWARD_CONFIG } from '../config/config.constants';
import type { KeywardConfig } from '../config/config';
import { scheduleLockedJob } from '../database/scheduled-job';
import { UsageRecorder } from '../usage/usage-recorder';
import { ALERT_RAISED, type AlertEvent } from './alert-events.service';
import { AlertConditions, type Subjects } from './alert-conditions';
import { AlertDeliveryService } from './alert-delivery.service';
import { alertMessage } from './alert-messages';
import { AlertRulesService } from './alert-rules.service';
import type { AlertKind, AlertRule, Evaluation } from './alert.types';
import { AlertsService } from './alerts.service';

/**
 * Kinds that committed usage can change, checked as soon as a batch is written. A projection
 * moves slowly and costs a query per subject, so it waits for the sweep.
 */
const USAGE_KINDS: AlertKind[] = ['usage_threshold', 'cost_threshold', 'error_rate'];
const ALL_KINDS: AlertKind[] = [
  ...USAGE_KINDS,
  'projected_overrun',
  'key_invalid',
  'rotation_due',
  'rotation_failed',
  'expiring',
  'no_healthy_key',
];

/**
 * Turns rules into alerts. Usage kinds are checked right after each committed usage batch (so an
 * alert follows the usage that crossed a threshold within the flush interval plus one query);
 * every kind is checked by a sweep that runs on one instance at a time. A firing condition
 * inserts an alert under the unique `(rule, dedupe key)` of active alerts: whichever instance
 * wins writes the deliveries in the same transaction, the other's insert does nothing. When the
 * condition no longer holds, the alert is marked cleared (and resolved), which re-arms the rule.
 */
@Injectable()
export class AlertEvaluator implements OnApplicationBootstrap {
  private readonly logger = new Logger('AlertEvaluator');
  private pending: { keyIds: Set<string>; tokenIds: Set<string>; providers: Set<string> } | null = null;
  private running: Promise<void> | undefined;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly registry: SchedulerRegistry,
    private readonly rules: AlertRulesService,
    private readonly conditions: AlertConditions,
    private readonly delivery: AlertDeliveryService,
    private readonly alerts: AlertsService,
    recorder: UsageRecorder,
    @Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig,
  ) {
    recorder.onCommitted((records) => {
      const subjects = this.pending ?? { keyIds: new Set(), tokenIds: new Set(), providers: new Set() };
      for (const r of records) {
        if (r.keyId) subjects.keyIds.add(r.keyId);
        if (r.accessTokenId) subjects.tokenIds.add(r.accessTokenId);
        subjects.providers.add(r.provider);
      }
      this.pending = subjects;
      this.drainPending();
    });
  }

  onApplicationBootstrap(): void {
    scheduleLockedJob(this.registry, this.dataSource, 'alert-sweep', this.config.alerts.sweepSeconds * 1000, () =>
      this.sweep(),
    );
  }

  /** Every enabled rule over every subject: time-based kinds, and what batches may have missed. */
  async sweep(now: Date = new Date()): Promise<void> {
    await this.run(ALL_KINDS, null, now);
  }

  /** Usage kinds for the subjects of committed usage; batches arriving meanwhile are merged. */
  async settle(): Promise<void> {
    while (this.running) await this.running;
  }

  @OnEvent(ALERT_RAISED)
  async onAlertRaised(event: AlertEvent): Promise<void> {
    if (event.kind !== 'key.invalid' || !event.keyId) return;
    try {
      const rows: { provider: string }[] = await this.dataSource.query(`SELECT provider FROM api_keys WHERE id = $1`, [
        event.keyId,
      ]);
      const subjects = { keyIds: [event.keyId], providers: rows.map((r) => r.provider) };
      await this.run(['key_invalid', 'no_healthy_key'], subjects, new Date());
    } catch (error) {
      this.logger.error(`Checking key alerts failed: ${(error as Error).message}`);
    }
  }

  private drainPending(): void {
    if (this.running || !this.pending) return;
    const taken = this.pending;
    this.pending = null;
    const subjects: Subjects = {
      keyIds: [...taken.keyIds],
      tokenIds: [...taken.tokenIds],
      providers: [...taken.providers],
    };
    this.running = this.run(USAGE_KINDS, subjects, new Date())
      .catch((error: Error) => this.logger.error(`Checking usage alerts failed: ${error.message}`))
      .finally(() => {
        this.running = undefined;
        this.drainPending();
      });
  }

  private async run(kinds: AlertKind[], subjects: Subjects | null, now: Date): Promise<void> {
    const rules = await this.rules.enabledOfKinds(kinds);
    let fired = 0;
    for (const rule of rules) {
      if (subjects && !touches(rule, subjects)) continue;
      try {
        fired += await this.apply(rule, await this.conditions.evaluate(rule, subjects, now));
      } catch (error) {
        this.logger.error(`Rule ${rule.id} (${rule.kind}) could not be checked: ${(error as Error).message}`);
      }
    }
    if (fired > 0) this.alerts.countChanged();
    this.delivery.kick();
  }

  /** Stores new firings with their deliveries and clears what stopped holding; the count of both. */
  private async apply(rule: AlertRule, evaluation: Evaluation): Promise<number> {
    let changed = 0;
    for (const firing of evaluation.firing) {
      const inserted = await this.dataSource.transaction(async (manager) => {
        const [row] = await manager.query(
          `INSERT INTO alerts (rule_id, kind, severity, dedupe_key, subject_type, subject_id, message, details)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (rule_id, dedupe_key) WHERE condition_active AND rule_id IS NOT NULL DO NOTHING
           RETURNING id, opened_at`,
          [
            rule.id,
            rule.kind,
            rule.severity,
            firing.dedupeKey,
            firing.subjectType,
            firing.subjectId,
            firing.message,
            firing.details,
          ],
        );
        if (!row) return false;
        const message = alertMessage('alert.fired', rule, { id: row.id, openedAt: row.opened_at, ...firing });
        await this.delivery.enqueue(manager, rule.channelIds, 'alert', message, { alertId: row.id });
        return true;
      });
      if (inserted) changed++;
    }

    const firingKeys = evaluation.firing.map((f) => f.dedupeKey).concat(evaluation.keep ?? []);
    // TypeORM answers an UPDATE … RETURNING as [rows, count].
    const [cleared]: [
      {
        id: string;
        opened_at: Date;
        dedupe_key: string;
        subject_type: string;
        subject_id: string | null;
        message: string;
        details: Record<string, unknown>;
      }[],
      number,
    ] = await this.dataSource.query(
      `UPDATE alerts SET condition_active = false, cleared_at = now(),
           state = 'resolved', resolved_at = coalesce(resolved_at, now()), resolved_by = coalesce(resolved_by, 'condition cleared')
         WHERE rule_id = $1 AND condition_active AND dedupe_key <> ALL($2::text[])
           AND EXISTS (SELECT 1 FROM unnest($3::text[]) p WHERE starts_with(dedupe_key, p))
         RETURNING id, opened_at, dedupe_key, subject_type, subject_id, message, details`,
      [rule.id, firingKeys, evaluation.covered],
    );
    for (const alert of cleared) {
      const message = alertMessage('alert.resolved', rule, {
        id: alert.id,
        openedAt: alert.opened_at,
        dedupeKey: alert.dedupe_key,
        subjectType: alert.subject_type as 'key',
        subjectId: alert.subject_id,
        message: alert.message,
        details: alert.details,
      });
      await this.delivery.enqueue(this.dataSource, rule.channelIds, 'resolved', message, { alertId: alert.id });
    }
    return changed + cleared.length;
  }
}

/** Whether a batch's subjects are within what the rule watches. */
function touches(rule: AlertRule, subjects: Subjects): boolean {
  switch (rule.scopeType) {
    case 'provider':
      return subjects.providers?.includes(rule.scopeId!) ?? false;
    case 'key':
      return subjects.keyIds?.includes(rule.scopeId!) ?? false;
    case 'token':
      return subjects.tokenIds?.includes(rule.scopeId!) ?? false;
    default:
      return true;
  }
}
