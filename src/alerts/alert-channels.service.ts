import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { randomBytes, randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { type FieldError, notFound, ValidationProblem } from '../common/problem';
import { SecretsService } from '../crypto/secrets.service';
import { maskSecret } from '../keys/key-hint';
import type { ChannelType } from './alert.types';
import type { ChannelConfig, ChannelTarget } from './channel-senders';
import type { CreateAlertChannelDto, UpdateAlertChannelDto } from './dto/alert-channel.dto';

/** A channel as the API and console show it: configuration, and a mask where the secret is. */
export interface AlertChannelView {
  id: string;
  name: string;
  type: ChannelType;
  enabled: boolean;
  reports: boolean;
  url?: string;
  smtpHost?: string;
  smtpPort?: number;
  smtpSecure?: boolean;
  smtpUser?: string;
  from?: string;
  to?: string[];
  /** `whsec_…a1b2`, `https://hooks.slack.com/…`, `••••••`: enough to recognise, never to use. */
  secretHint: string | null;
  /** The newest delivery's outcome, for the delivery log's summary. */
  lastDelivery: { status: string; statusCode: number | null; at: Date } | null;
  createdAt: Date;
  updatedAt: Date;
}

interface ChannelRow {
  id: string;
  name: string;
  type: ChannelType;
  enabled: boolean;
  reports: boolean;
  config: ChannelConfig;
  secret_ciphertext: Buffer | null;
  secret_hint: string | null;
  last_delivery?: { status: string; statusCode: number | null; at: string } | null;
  created_at: Date;
  updated_at: Date;
}

const aadFor = (id: string) => `alert_channel:${id}`;

const SELECT_VIEW = `SELECT c.*, (
    SELECT json_build_object('status', d.status, 'statusCode', d.last_status_code, 'at', coalesce(d.delivered_at, d.created_at))
      FROM alert_deliveries d WHERE d.channel_id = c.id ORDER BY d.created_at DESC LIMIT 1) AS last_delivery
  FROM alert_channels c`;

function hintFor(type: ChannelType, secret: string): string {
  if (type === 'slack') {
    try {
      return `${new URL(secret).origin}/…`;
    } catch {
      return '…';
    }
  }
  return type === 'email' ? '••••••' : maskSecret(secret);
}

/** Where alerts go. Secrets are sealed like provider keys, bound to the channel's id. */
@Injectable()
export class AlertChannelsService {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly secrets: SecretsService,
  ) {}

  async list(): Promise<AlertChannelView[]> {
    const rows: ChannelRow[] = await this.dataSource.query(`${SELECT_VIEW} ORDER BY c.created_at, c.id`);
    return rows.map(toView);
  }

  async get(id: string): Promise<AlertChannelView> {
    const [row]: ChannelRow[] = await this.dataSource.query(`${SELECT_VIEW} WHERE c.id = $1`, [id]);
    if (!row) throw notFound('Alert channel', id);
    return toView(row);
  }

  /** The channel with its secret opened, for one send. Never leaves the delivery code. */
  async target(id: string): Promise<(ChannelTarget & { enabled: boolean }) | null> {
    const [row]: ChannelRow[] = await this.dataSource.query(`SELECT * FROM alert_channels WHERE id = $1`, [id]);
    if (!row) return null;
    const secret = row.secret_ciphertext
      ? this.secrets.open(row.secret_ciphertext, aadFor(row.id)).toString('utf8')
      : null;
    return { id: row.id, name: row.name, type: row.type, config: row.config, secret, enabled: row.enabled };
  }

  /** Answers the view and, for a webhook whose secret Keyward generated, that secret once. */
  async create(dto: CreateAlertChannelDto, actor: string | null) {
    const id = randomUUID();
    const generated =
      dto.type === 'webhook' && !dto.signingSecret ? `whsec_${randomBytes(24).toString('base64url')}` : undefined;
    const secret = generated ?? secretOf(dto.type, dto);
    const config = configOf(dto.type, dto, {});
    check(dto.type, config, secret);
    await this.dataSource.query(
      `INSERT INTO alert_channels (id, name, type, enabled, reports, config, secret_ciphertext, secret_hint, created_by)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [
        id,
        dto.name,
        dto.type,
        dto.enabled ?? true,
        dto.reports ?? false,
        config,
        secret ? this.secrets.seal(secret, aadFor(id)) : null,
        secret ? hintFor(dto.type, secret) : null,
        actor,
      ],
    );
    return { channel: await this.get(id), signingSecret: generated };
  }

  async update(id: string, dto: UpdateAlertChannelDto): Promise<AlertChannelView> {
    const row = await this.row(id);
    const secret = secretOf(row.type, dto);
    const config = configOf(row.type, dto, row.config);
    check(row.type, config, secret ?? (row.secret_ciphertext ? 'kept' : undefined));
    await this.dataSource.query(
      `UPDATE alert_channels SET name = $2, enabled = $3, reports = $4, config = $5,
         secret_ciphertext = coalesce($6, secret_ciphertext), secret_hint = coalesce($7, secret_hint), updated_at = now()
       WHERE id = $1`,
      [
        id,
        dto.name ?? row.name,
        dto.enabled ?? row.enabled,
        dto.reports ?? row.reports,
        config,
        secret ? this.secrets.seal(secret, aadFor(id)) : null,
        secret ? hintFor(row.type, secret) : null,
      ],
    );
    return this.get(id);
  }

  async remove(id: string): Promise<void> {
    const [, count] = await this.dataSource.query(`DELETE FROM alert_channels WHERE id = $1`, [id]);
    if (!count) throw notFound('Alert channel', id);
    await this.dataSource.query(`UPDATE alert_rules SET channel_ids = array_remove(channel_ids, $1::uuid)`, [id]);
  }

  /** The delivery log of one channel, newest first. */
  async deliveries(id: string, limit = 50) {
    await this.row(id);
    return this.dataSource.query(
      `SELECT id, purpose, alert_id AS "alertId", report_id AS "reportId", status, attempts,
              last_status_code AS "lastStatusCode", last_error AS "lastError", next_attempt_at AS "nextAttemptAt",
              delivered_at AS "deliveredAt", created_at AS "createdAt"
         FROM alert_deliveries WHERE channel_id = $1 ORDER BY created_at DESC LIMIT $2`,
      [id, limit],
    );
  }

  private async row(id: string): Promise<ChannelRow> {
    const [row]: ChannelRow[] = await this.dataSource.query(`SELECT * FROM alert_channels WHERE id = $1`, [id]);
    if (!row) throw notFound('Alert channel', id);
    return row;
  }
}

function secretOf(type: ChannelType, dto: UpdateAlertChannelDto): string | undefined {
  if (type === 'webhook') return dto.signingSecret;
  if (type === 'slack') return dto.slackUrl;
  return dto.smtpPassword || undefined;
}

function configOf(type: ChannelType, dto: UpdateAlertChannelDto, current: ChannelConfig): ChannelConfig {
  if (type === 'webhook') return { url: dto.url ?? current.url };
  if (type === 'slack') return {};
  return {
    smtpHost: dto.smtpHost ?? current.smtpHost,
    smtpPort: dto.smtpPort ?? current.smtpPort,
    smtpSecure: dto.smtpSecure ?? current.smtpSecure,
    smtpUser: dto.smtpUser ?? current.smtpUser,
    from: dto.from ?? current.from,
    to: dto.to ?? current.to,
  };
}

/** What each type needs, named by field. */
function check(type: ChannelType, config: ChannelConfig, secret: string | undefined): void {
  const errors: FieldError[] = [];
  const need = (ok: unknown, field: string, message: string) => {
    if (!ok) errors.push({ field, messages: [message] });
  };
  if (type === 'webhook') need(config.url, 'url', 'url is required for a webhook channel');
  if (type === 'slack') need(secret, 'slackUrl', 'slackUrl is required for a Slack channel');
  if (type === 'email') {
    need(config.smtpHost, 'smtpHost', 'smtpHost is required for an email channel');
    need(config.from, 'from', 'from is required for an email channel');
    need(config.to?.length, 'to', 'to must name at least one address');
  }
  if (errors.length > 0) throw new ValidationProblem(errors);
}

function toView(row: ChannelRow): AlertChannelView {
  return {
    id: row.id,
    name: row.name,
    type: row.type,
    enabled: row.enabled,
    reports: row.reports,
    ...row.config,
    secretHint: row.secret_hint,
    lastDelivery: row.last_delivery
      ? {
          status: row.last_delivery.status,
          statusCode: row.last_delivery.statusCode,
          at: new Date(row.last_delivery.at),
        }
      : null,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
