import { Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, SelectQueryBuilder } from 'typeorm';
import type { QueryDeepPartialEntity } from 'typeorm/query-builder/QueryPartialEntity';
import { SecretsService } from '../crypto/secrets.service';
import { outsideAmbientTransaction } from '../database/ambient-transaction';
import { chainHash, ChainBreak, findBreak, GENESIS_HASH } from './audit-chain';
import { AuditCheckpointService, type CheckpointSource } from './audit-checkpoints';
import { AuditEntry } from './audit-entry.entity';
import type { AuditContext, AuditRecord } from './audit.types';
import { cleanDetails, cleanOptionalText, cleanText } from './sanitize';

/** Field names whose values must never reach the audit log (a Slack webhook URL is its own credential). */
const SECRET_FIELD = /(pass(word)?|secret|token|authorization|cookie|key$|plaintext|credential|slackurl)/i;

const notSecret = (field: string) => !SECRET_FIELD.test(field);
const clip = cleanOptionalText;

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
  /** The newest entry. */
  head: { seq: number; hash: string } | null;
  firstBreak: ChainBreak | null;
  /** The newest signed checkpoint the chain was compared with (null: none taken yet). */
  checkpoint: { seq: number; hash: string; at: string; source: CheckpointSource } | null;
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
    private readonly checkpoints: AuditCheckpointService,
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
    // A refused or failed attempt changed nothing, and its entry must survive the rollback of the
    // request that follows it; a change's entry commits with the change (the request's transaction).
    if (record.outcome !== 'success') return outsideAmbientTransaction(() => this.append(context, record));
    return this.append(context, record);
  }

  private append(context: AuditContext, record: AuditRecord): Promise<AuditEntry> {
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
        action: cleanText(record.action, 100),
        targetType: clip(record.target?.type, 100),
        targetId: clip(record.target?.id, 200),
        outcome: record.outcome,
        status: record.status ?? null,
        reason: clip(record.reason, 500),
        details: cleanDetails(record.details ?? {}, notSecret),
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

  /**
   * Walks the whole chain in batches and reports the first broken link, then compares the head
   * with the newest signed checkpoint: entries the checkpoint saw but the table no longer holds
   * mean the newest rows were removed.
   */
  async verifyChain(): Promise<ChainReport> {
    const repo = this.dataSource.getRepository(AuditEntry);
    const latest = await this.checkpoints.latest();
    const checkpoint = latest
      ? { seq: latest.checkpoint.seq, hash: latest.checkpoint.hash, at: latest.checkpoint.at, source: latest.source }
      : null;
    let previous: { seq: number; hash: string } | null = null;
    let checked = 0;
    let atCheckpoint: string | null = null;
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
        return { ok: false, checked, head: null, firstBreak, checkpoint };
      }
      checked += rows.length;
      const last: AuditEntry = rows[rows.length - 1];
      if (checkpoint) atCheckpoint = rows.find((r) => r.seq === checkpoint.seq)?.hash ?? atCheckpoint;
      previous = { seq: last.seq, hash: last.hash };
    }
    const head = previous;
    if (latest && !latest.genuine) {
      return {
        ok: false,
        checked,
        head,
        checkpoint,
        firstBreak: {
          seq: latest.checkpoint.seq,
          reason: 'the newest audit checkpoint in the database does not carry a valid signature',
        },
      };
    }
    if (checkpoint && (!head || head.seq < checkpoint.seq)) {
      const from = (head?.seq ?? 0) + 1;
      return {
        ok: false,
        checked,
        head,
        checkpoint,
        firstBreak: {
          seq: from,
          reason: `entries ${from}–${checkpoint.seq} are missing: the signed checkpoint of ${checkpoint.at} saw the chain reach entry ${checkpoint.seq}`,
        },
      };
    }
    if (checkpoint && atCheckpoint !== checkpoint.hash) {
      return {
        ok: false,
        checked,
        head,
        checkpoint,
        firstBreak: {
          seq: checkpoint.seq,
          reason: `entry ${checkpoint.seq} differs from the one the signed checkpoint of ${checkpoint.at} saw`,
        },
      };
    }
    return { ok: true, checked, head, firstBreak: null, checkpoint };
  }
}

function escapeLike(value: string): string {
  return value.replace(/[\\%_]/g, (c) => `\\${c}`);
}
