import {
  BeforeApplicationShutdown,
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
  OnModuleDestroy,
} from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { timingSafeEqual } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { DataSource } from 'typeorm';
import type { KeywardConfig } from '../config/config';
import { KEYWARD_CONFIG } from '../config/config.constants';
import { SecretsService } from '../crypto/secrets.service';
import { canonicalJson } from './canonical-json';

/** A signed statement "the audit chain's newest entry was `seq`, with `hash`, at `at`". */
export interface AuditCheckpoint {
  seq: number;
  hash: string;
  at: string;
  signature: string;
  /** Why it was taken: periodic, shutdown, manual. */
  reason: string;
}

export type CheckpointSource = 'database' | 'file';

const PURPOSE = 'audit-checkpoint';

/**
 * Anchors the audit chain's head outside the chain. The chain itself shows an edited or removed
 * entry in the middle, but not the newest entries removed: a checkpoint, signed with a key
 * derived from the master key, remembers how far the chain reached. Checkpoints go to their own
 * append-only table, to the log, and optionally to a file and a webhook that the database
 * cannot reach — so whoever can rewrite the database cannot also rewrite them.
 */
@Injectable()
export class AuditCheckpointService implements OnApplicationBootstrap, BeforeApplicationShutdown, OnModuleDestroy {
  private readonly logger = new Logger('AuditCheckpoint');
  private timer?: NodeJS.Timeout;
  private taking?: Promise<AuditCheckpoint | null>;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly secrets: SecretsService,
    @Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig,
  ) {}

  onApplicationBootstrap(): void {
    this.timer = setInterval(
      () => void this.take('periodic').catch(() => undefined),
      this.config.security.checkpointSeconds * 1000,
    );
    this.timer.unref();
  }

  onModuleDestroy(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** The last word before the pool closes: a shutdown checkpoint of the head. */
  async beforeApplicationShutdown(): Promise<void> {
    await this.take('shutdown').catch((error: unknown) =>
      this.logger.warn({ err: error }, 'Could not write the shutdown audit checkpoint'),
    );
  }

  sign(fields: Pick<AuditCheckpoint, 'seq' | 'hash' | 'at'>): string {
    return this.secrets.hmac(PURPOSE, canonicalJson(['keyward-audit-checkpoint', fields.seq, fields.hash, fields.at]));
  }

  isGenuine(checkpoint: AuditCheckpoint): boolean {
    const expected = Buffer.from(this.sign(checkpoint), 'hex');
    const given = Buffer.from(String(checkpoint.signature), 'hex');
    return expected.length === given.length && timingSafeEqual(expected, given);
  }

  /**
   * Signs the current head, unless the newest checkpoint already covers it. One at a time per
   * instance; several instances may each write one, which does no harm.
   */
  async take(reason: string): Promise<AuditCheckpoint | null> {
    this.taking ??= this.write(reason).finally(() => (this.taking = undefined));
    return this.taking;
  }

  private async write(reason: string): Promise<AuditCheckpoint | null> {
    const [head] = await this.dataSource.query<{ seq: string; hash: string }[]>(
      'SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1',
    );
    if (!head) return null;
    const latest = await this.latestFromDatabase();
    if (latest && latest.seq === Number(head.seq) && latest.hash === head.hash) return latest;
    const at = new Date().toISOString();
    const checkpoint: AuditCheckpoint = { seq: Number(head.seq), hash: head.hash, at, signature: '', reason };
    checkpoint.signature = this.sign(checkpoint);
    await this.dataSource.query(
      'INSERT INTO audit_checkpoints (at, seq, hash, signature, reason) VALUES ($1, $2, $3, $4, $5)',
      [at, checkpoint.seq, checkpoint.hash, checkpoint.signature, reason],
    );
    this.logger.log({ auditCheckpoint: checkpoint }, `Audit checkpoint: entry ${checkpoint.seq}`);
    await Promise.all([this.toFile(checkpoint), this.toWebhook(checkpoint)]);
    return checkpoint;
  }

  private async toFile(checkpoint: AuditCheckpoint): Promise<void> {
    const file = this.config.security.checkpointFile;
    if (!file) return;
    try {
      await fs.mkdir(path.dirname(file), { recursive: true });
      await fs.appendFile(file, `${JSON.stringify(checkpoint)}\n`, { mode: 0o600 });
    } catch (error) {
      this.logger.error({ err: error }, `Could not append the audit checkpoint to ${file}`);
    }
  }

  private async toWebhook(checkpoint: AuditCheckpoint): Promise<void> {
    const url = this.config.security.checkpointUrl;
    if (!url) return;
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'keyward-audit-checkpoint' },
        body: JSON.stringify({ type: 'keyward.audit.checkpoint', ...checkpoint }),
        signal: AbortSignal.timeout(5000),
      });
      if (!res.ok) this.logger.error(`The audit checkpoint webhook answered ${res.status}`);
    } catch (error) {
      this.logger.error({ err: error }, 'Could not send the audit checkpoint to the webhook');
    }
  }

  private async latestFromDatabase(): Promise<AuditCheckpoint | null> {
    const [row] = await this.dataSource.query<
      { seq: string; hash: string; at: Date; signature: string; reason: string }[]
    >('SELECT seq, hash, at, signature, reason FROM audit_checkpoints ORDER BY seq DESC, id DESC LIMIT 1');
    if (!row) return null;
    return {
      seq: Number(row.seq),
      hash: row.hash,
      at: row.at.toISOString(),
      signature: row.signature,
      reason: row.reason,
    };
  }

  /** The newest genuine checkpoint of the file (lines that do not verify are ignored). */
  private async latestFromFile(): Promise<AuditCheckpoint | null> {
    const file = this.config.security.checkpointFile;
    if (!file) return null;
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch {
      return null;
    }
    let best: AuditCheckpoint | null = null;
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      try {
        const candidate = JSON.parse(line) as AuditCheckpoint;
        if (typeof candidate.seq !== 'number' || !this.isGenuine(candidate)) continue;
        if (!best || candidate.seq > best.seq) best = candidate;
      } catch {
        continue;
      }
    }
    return best;
  }

  /**
   * The checkpoint verification compares against: the furthest-reaching genuine one, from the
   * file or the database. A database checkpoint whose signature fails is reported as such.
   */
  async latest(): Promise<{ checkpoint: AuditCheckpoint; source: CheckpointSource; genuine: boolean } | null> {
    const fromDb = await this.latestFromDatabase();
    const fromFile = await this.latestFromFile();
    if (fromFile && (!fromDb || fromFile.seq >= fromDb.seq))
      return { checkpoint: fromFile, source: 'file', genuine: true };
    if (fromDb) return { checkpoint: fromDb, source: 'database', genuine: this.isGenuine(fromDb) };
    return null;
  }
}
