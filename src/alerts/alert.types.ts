import type { AlertSeverity } from './alert-events.service';

export const ALERT_KINDS = [
  'usage_threshold',
  'cost_threshold',
  'error_rate',
  'key_invalid',
  'rotation_due',
  'rotation_failed',
  'expiring',
  'no_healthy_key',
  'projected_overrun',
] as const;
export type AlertKind = (typeof ALERT_KINDS)[number];

export const SEVERITIES = ['info', 'warning', 'critical'] as const satisfies readonly AlertSeverity[];
export const SCOPE_TYPES = ['all', 'provider', 'key', 'token'] as const;
export type ScopeType = (typeof SCOPE_TYPES)[number];
export const COST_PERIODS = ['daily', 'weekly', 'monthly'] as const;
export type CostPeriod = (typeof COST_PERIODS)[number];
export const ALERT_STATES = ['open', 'acknowledged', 'resolved'] as const;
export type AlertState = (typeof ALERT_STATES)[number];
export const CHANNEL_TYPES = ['webhook', 'slack', 'email'] as const;
export type ChannelType = (typeof CHANNEL_TYPES)[number];

/** What each kind of rule may watch, and which of its settings it needs. */
export const KIND_RULES: Record<
  AlertKind,
  { label: string; scopes: readonly ScopeType[]; needs: readonly (keyof AlertRuleParams)[] }
> = {
  usage_threshold: { label: 'Usage of a limit or budget', scopes: ['all', 'key', 'token'], needs: ['thresholds'] },
  cost_threshold: {
    label: 'Cost over a period',
    scopes: ['all', 'provider', 'key', 'token'],
    needs: ['amountUsd', 'period'],
  },
  error_rate: {
    label: 'Error rate',
    scopes: ['all', 'provider', 'key'],
    needs: ['errorRatePercent', 'windowMinutes', 'minRequests'],
  },
  key_invalid: { label: 'Key refused as invalid', scopes: ['all', 'provider', 'key'], needs: [] },
  rotation_due: { label: 'Rotation due', scopes: ['all', 'provider', 'key'], needs: ['withinDays'] },
  rotation_failed: { label: 'Rotation failed', scopes: ['all', 'provider', 'key'], needs: [] },
  expiring: { label: 'Key or token expiring', scopes: ['all', 'provider', 'key', 'token'], needs: ['withinDays'] },
  no_healthy_key: { label: 'No healthy key left', scopes: ['all', 'provider'], needs: [] },
  projected_overrun: { label: 'Projected overrun', scopes: ['all', 'key', 'token'], needs: [] },
};

/** A rule's kind-specific settings (stored as `params`). */
export interface AlertRuleParams {
  /** usage_threshold: percents of the limit or budget, e.g. [50, 80, 100]. */
  thresholds?: number[];
  /** cost_threshold: USD in one period. */
  amountUsd?: number;
  period?: CostPeriod;
  /** error_rate: at least this percent of requests failed … */
  errorRatePercent?: number;
  /** … over this many minutes … */
  windowMinutes?: number;
  /** … with at least this many requests. */
  minRequests?: number;
  /** expiring, rotation_due: how far ahead to warn. */
  withinDays?: number;
}

export interface AlertRule {
  id: string;
  name: string;
  kind: AlertKind;
  severity: AlertSeverity;
  enabled: boolean;
  scopeType: ScopeType;
  scopeId: string | null;
  params: AlertRuleParams;
  channelIds: string[];
  createdBy: string | null;
  createdAt: Date;
  updatedAt: Date;
}

/** A condition that holds right now for one subject of a rule. */
export interface Firing {
  /** Subject, threshold and (where the rule fires once per period) the period. */
  dedupeKey: string;
  subjectType: 'key' | 'token' | 'provider' | 'all';
  subjectId: string | null;
  message: string;
  details: Record<string, unknown>;
}

/** The result of evaluating one rule for some subjects: what holds, and what was looked at. */
export interface Evaluation {
  firing: Firing[];
  /** Prefixes of dedupe keys this evaluation covered: active alerts under them that are not firing cleared. */
  covered: string[];
  /** Dedupe keys that stay active even while not firing (once per period, whatever the wobble). */
  keep?: string[];
}
