import { Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, SelectQueryBuilder } from 'typeorm';
import type { QueryDeepPartialEntity } from 'typeorm/query-builder/QueryPartialEntity';
import { SecretsService } from '../crypto/secrets.service';
import { chainHash, ChainBreak, findBreak, GENESIS_HASH } from './audit-chain';
import { AuditEntry } from './audit-entry.entity';
import type { AuditContext, AuditRecord } from './audit.types';

/** Field names whose values must never reach the audit log (a Slack webhook URL is its own credential). */
const SECRET_FIELD = /(pass(word)?|secret|token|authorization|cookie|key$|plaintext|credential|slackurl)/i;

function scrub(value: unknown, depth = 0): unknown {
  if (depth > 5 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.slice(0, 50).map((v) => scrub(v, depth + 1));
  return Object.fromEntries(
    Object.entries(value as Record<string, unknown>)
      .filter(([k]) => !SECRET_FIELD.test(k))
      .map(([k, v]) => [k, scrub(v, depth + 1)]),
  );
}

const clip = (value: string | null | undefined, max: number) =>
  value === null || value === undefined ? null : value.slice(0, max);

export interface AuditQuery {
  actor?: string;
  action?: string;
  target?: string;
  outcome?: string;
  from?: Date;
  to?: Date;
  page: number;
  pageSize: number;
}

export interface AuditPage {
  entries: AuditEntry[];
  total: number;
  page: number;
  pageSize: number;
}

export interface ChainReport {
  ok: boolean;
  checked: number;
  /** The newest entry; record it elsewhere to detect truncation of the newest rows. */
  head: { seq: number; hash: string } | null;
  firstBreak: ChainBreak | null;
}

// One lock id for "appending to the audit chain", shared by every instance.
const APPEND_LOCK = 0x6b7761756469; // "kwaudi"
const VERIFY_BATCH = 1000;

/** Says, for the log, what a target id is (a key's name and masked hint); never a secret. */
export type TargetDescriber = (id: string) => Promise<Record<string, unknown> | null>;

@Injectable()
export class AuditService {
  private readonly logger = new Logger(AuditService.name);
  private readonly describers = new Map<string, TargetDescriber>();

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly secrets: SecretsService,
  ) {}

  private get chainKey(): Buffer {
    return this.secrets.derive('audit-chain');
  }

  /**
   * Appends one entry. Appends are serialised with an advisory lock so that each entry links to
   * exactly one predecessor, whichever instance writes it.
   */
  /** Feature modules register how their targets are named in the log (see AuditInterceptor). */
  registerDescriber(targetType: string, describer: TargetDescriber): void {
    this.describers.set(targetType, describer);
  }

  async describe(
    targetType: string | undefined,
    id: string | null | undefined,
  ): Promise<Record<string, unknown> | null> {
    const describer = targetType ? this.describers.get(targetType) : undefined;
    if (!describer || !id) return null;
    try {
      return await describer(id);
    } catch {
      return null;
    }
  }

  async record(context: AuditContext, record: AuditRecord): Promise<AuditEntry> {
    return this.dataSource.transaction(async (manager) => {
      await manager.query('SELECT pg_advisory_xact_lock($1)', [APPEND_LOCK]);
      const [last] = (await manager.query('SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1')) as {
        seq: string;
        hash: string;
      }[];

      const entry = manager.create(AuditEntry, {
        seq: last ? Number(last.seq) + 1 : 1,
        at: new Date(),
        actorId: context.actor?.id ?? null,
        actorEmail: clip(context.actor?.email, 320),
        actorRole: context.actor?.role ?? null,
        ip: clip(context.ip, 64),
        userAgent: clip(context.userAgent, 512),
        action: record.action,
        targetType: record.target?.type ?? null,
        targetId: clip(record.target?.id, 200),
        outcome: record.outcome,
        status: record.status ?? null,
        reason: clip(record.reason, 500),
        details: (scrub(record.details ?? {}) as Record<string, unknown>) ?? {},
        prevHash: last ? last.hash : GENESIS_HASH,
      });
      entry.hash = chainHash(this.chainKey, entry);
      await manager.insert(AuditEntry, entry as QueryDeepPartialEntity<AuditEntry>);
      return entry;
    });
  }

  /** Like `record`, but an audit failure is logged instead of failing the caller's request. */
  async recordSafely(context: AuditContext, record: AuditRecord): Promise<void> {
    try {
      await this.record(context, record);
    } catch (error) {
      this.logger.error({ err: error, action: record.action }, 'Could not write an audit entry');
    }
  }

  async list(query: AuditQuery): Promise<AuditPage> {
    const qb = this.filtered(query)
      .orderBy('a.seq', 'DESC')
      .skip((query.page - 1) * query.pageSize)
      .take(query.pageSize);
    const [entries, total] = await qb.getManyAndCount();
    return { entries, total, page: query.page, pageSize: query.pageSize };
  }

  private filtered(query: AuditQuery): SelectQueryBuilder<AuditEntry> {
    const qb = this.dataSource.getRepository(AuditEntry).createQueryBuilder('a');
    if (query.actor) qb.andWhere('a.actor_email ILIKE :actor', { actor: `%${escapeLike(query.actor)}%` });
    if (query.action) {
      // "auth." matches every auth action; "auth.signin" only that one.
      if (query.action.endsWith('.')) qb.andWhere('a.action LIKE :action', { action: `${escapeLike(query.action)}%` });
      else qb.andWhere('a.action = :action', { action: query.action });
    }
    if (query.target) {
      qb.andWhere('(a.target_id = :target OR a.target_type = :target)', { target: query.target });
    }
    if (query.outcome) qb.andWhere('a.outcome = :outcome', { outcome: query.outcome });
    if (query.from) qb.andWhere('a.at >= :from', { from: query.from });
    if (query.to) qb.andWhere('a.at <= :to', { to: query.to });
    return qb;
  }

  /** Walks the whole chain in batches and reports the first broken link. */
  async verifyChain(): Promise<ChainReport> {
    const repo = this.dataSource.getRepository(AuditEntry);
    let previous: { seq: number; hash: string } | null = null;
    let checked = 0;
    for (;;) {
      const rows: AuditEntry[] = await repo
        .createQueryBuilder('a')
        .where('a.seq > :after', { after: previous?.seq ?? 0 })
        .orderBy('a.seq', 'ASC')
        .take(VERIFY_BATCH)
        .getMany();
      if (rows.length === 0) break;
      const firstBreak = findBreak(this.chainKey, rows, previous);
      if (firstBreak) {
        checked += rows.findIndex((r) => r.seq === firstBreak.seq);
        return { ok: false, checked, head: null, firstBreak };
      }
      checked += rows.length;
      const last: AuditEntry = rows[rows.length - 1];
      previous = { seq: last.seq, hash: last.hash };
    }
    return { ok: true, checked, head: previous, firstBreak: null };
  }
}

function escapeLike(value: string): string {
  return value.replace(/[\\%_]/g, (c) => `\\${c}`);
}
