import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { type FieldError, notFound, ValidationProblem } from '../common/problem';
import { ProviderRegistry } from '../plugin-system/provider-registry';
import { type AlertRule, type AlertRuleParams, KIND_RULES } from './alert.types';
import type { CreateAlertRuleDto, UpdateAlertRuleDto } from './dto/alert-rule.dto';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const PARAM_FIELDS = [
  'thresholds',
  'amountUsd',
  'period',
  'errorRatePercent',
  'windowMinutes',
  'minRequests',
  'withinDays',
] as const satisfies readonly (keyof AlertRuleParams)[];

const SELECT = `SELECT id, name, kind, severity, enabled, scope_type AS "scopeType", scope_id AS "scopeId", params,
  channel_ids AS "channelIds", created_by AS "createdBy", created_at AS "createdAt", updated_at AS "updatedAt"
  FROM alert_rules`;

/** Alert rules: what to watch, how loud, and where to say it. */
@Injectable()
export class AlertRulesService {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly registry: ProviderRegistry,
  ) {}

  list(): Promise<AlertRule[]> {
    return this.dataSource.query(`${SELECT} ORDER BY created_at, id`);
  }

  enabledOfKinds(kinds: readonly string[]): Promise<AlertRule[]> {
    return this.dataSource.query(`${SELECT} WHERE enabled AND kind = ANY($1) ORDER BY created_at`, [kinds]);
  }

  async get(id: string): Promise<AlertRule> {
    const [rule] = await this.dataSource.query(`${SELECT} WHERE id = $1`, [id]);
    if (!rule) throw notFound('Alert rule', id);
    return rule;
  }

  async create(dto: CreateAlertRuleDto, actor: string | null): Promise<AlertRule> {
    const rule = await this.checked({
      name: dto.name,
      kind: dto.kind,
      severity: dto.severity,
      enabled: dto.enabled ?? true,
      scopeType: dto.scopeType ?? 'all',
      scopeId: dto.scopeId ?? null,
      params: pickParams(dto),
      channelIds: dto.channelIds ?? [],
    });
    const [row] = await this.dataSource.query(
      `INSERT INTO alert_rules (name, kind, severity, enabled, scope_type, scope_id, params, channel_ids, created_by)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id`,
      [
        rule.name,
        rule.kind,
        rule.severity,
        rule.enabled,
        rule.scopeType,
        rule.scopeId,
        rule.params,
        rule.channelIds,
        actor,
      ],
    );
    return this.get(row.id);
  }

  async update(id: string, dto: UpdateAlertRuleDto): Promise<AlertRule> {
    const current = await this.get(id);
    const kindChanged = dto.kind !== undefined && dto.kind !== current.kind;
    const rule = await this.checked({
      name: dto.name ?? current.name,
      kind: dto.kind ?? current.kind,
      severity: dto.severity ?? current.severity,
      enabled: dto.enabled ?? current.enabled,
      scopeType: dto.scopeType ?? current.scopeType,
      scopeId:
        dto.scopeType === 'all'
          ? null
          : (dto.scopeId ?? (dto.scopeType && dto.scopeType !== current.scopeType ? null : current.scopeId)),
      params: { ...(kindChanged ? {} : current.params), ...pickParams(dto) },
      channelIds: dto.channelIds ?? current.channelIds,
    });
    await this.dataSource.query(
      `UPDATE alert_rules SET name = $2, kind = $3, severity = $4, enabled = $5, scope_type = $6, scope_id = $7,
         params = $8, channel_ids = $9, updated_at = now() WHERE id = $1`,
      [
        id,
        rule.name,
        rule.kind,
        rule.severity,
        rule.enabled,
        rule.scopeType,
        rule.scopeId,
        rule.params,
        rule.channelIds,
      ],
    );
    // A rule that now watches something else judges afresh: what it raised under its old
    // settings is resolved and no longer holds it back. A new name, severity, channel list or
    // an enable switch changes nothing about what already fired.
    const watchesElse =
      rule.kind !== current.kind ||
      rule.scopeType !== current.scopeType ||
      rule.scopeId !== current.scopeId ||
      canonical(rule.params) !== canonical(current.params);
    if (watchesElse) {
      await this.dataSource.query(
        `UPDATE alerts SET condition_active = false, cleared_at = now(), state = 'resolved',
           resolved_at = coalesce(resolved_at, now()), resolved_by = coalesce(resolved_by, 'rule changed')
         WHERE rule_id = $1 AND condition_active`,
        [id],
      );
    }
    return this.get(id);
  }

  async remove(id: string): Promise<void> {
    const [, count] = await this.dataSource.query(`DELETE FROM alert_rules WHERE id = $1`, [id]);
    if (!count) throw notFound('Alert rule', id);
  }

  /** The rules that are checked against the kind and the database, not the DTO alone. */
  private async checked(rule: Omit<AlertRule, 'id' | 'createdBy' | 'createdAt' | 'updatedAt'>) {
    const errors: FieldError[] = [];
    const fail = (field: string, message: string) => errors.push({ field, messages: [message] });
    const spec = KIND_RULES[rule.kind];
    if (!spec.scopes.includes(rule.scopeType)) {
      fail('scopeType', `a ${rule.kind} rule watches ${spec.scopes.join(', ')}; not ${rule.scopeType}`);
    } else if (rule.scopeType !== 'all') {
      if (!rule.scopeId) fail('scopeId', `scopeId must name the ${rule.scopeType} this rule watches`);
      else if (!(await this.scopeExists(rule.scopeType, rule.scopeId)))
        fail('scopeId', `scopeId must be the id of an existing ${rule.scopeType}`);
    }
    for (const field of spec.needs) {
      if (rule.params[field] === undefined) fail(field, `${field} is required for a ${rule.kind} rule`);
    }
    const params: AlertRuleParams = {};
    for (const field of spec.needs) (params as Record<string, unknown>)[field] = rule.params[field];
    if (params.thresholds) params.thresholds = [...new Set(params.thresholds)].sort((a, b) => a - b);
    if (rule.channelIds.length > 0) {
      const [{ found }] = await this.dataSource.query(
        `SELECT count(*)::int AS found FROM alert_channels WHERE id = ANY($1)`,
        [rule.channelIds],
      );
      if (found !== new Set(rule.channelIds).size) fail('channelIds', 'channelIds must name existing channels');
    }
    if (errors.length > 0) throw new ValidationProblem(errors);
    return { ...rule, params, channelIds: [...new Set(rule.channelIds)] };
  }

  private async scopeExists(type: string, id: string): Promise<boolean> {
    if (type === 'provider') return this.registry.get(id) !== undefined;
    if (!UUID.test(id)) return false;
    const table = type === 'key' ? 'api_keys' : 'access_tokens';
    const rows = await this.dataSource.query(`SELECT 1 FROM ${table} WHERE id = $1`, [id]);
    return rows.length > 0;
  }
}

/** Settings as comparable text: jsonb keeps keys in its own order. */
const canonical = (params: AlertRuleParams) =>
  JSON.stringify(Object.entries(params).sort(([a], [b]) => a.localeCompare(b)));

function pickParams(dto: UpdateAlertRuleDto): AlertRuleParams {
  const out: Record<string, unknown> = {};
  for (const field of PARAM_FIELDS) if (dto[field] !== undefined) out[field] = dto[field];
  return out as AlertRuleParams;
}
