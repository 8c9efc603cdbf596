import { Injectable, Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import type { PostgresDataSourceOptions } from 'typeorm/driver/postgres/PostgresDataSourceOptions';
import { conflict, type FieldError, notFound, ValidationProblem } from '../common/problem';
import { ProviderRegistry } from '../plugin-system/provider-registry';
import { AccessToken } from './access-token.entity';
import { ACCESS_TOKEN_PATTERN, TOKENS_CHANNEL } from './access-tokens.constants';
import type { CreateAccessTokenDto, UpdateAccessTokenDto } from './dto/create-access-token.dto';
import { type BudgetInput, TokenBudgets } from './token-budgets';
import type { ListAccessTokensQuery } from './dto/list-access-tokens.query';
import { type IpRange, ipInRanges, normalizeIpRule, parseIpRule } from './ip-rules';

/** What the gateway knows about the caller once its token resolved. Lists that are null mean "all". */
export interface GatewayPrincipal {
  id: string;
  name: string;
  providers: string[] | null;
  models: string[] | null;
  rateLimitPerMinute: number | null;
  allowedIps: string[] | null;
  expiresAt: Date | null;
  /** Grants beyond the inference groups (TOKEN_SCOPES): `principal.scopes.has('files')`. */
  scopes: ReadonlySet<string>;
}

/** Cache lifetimes and bounds of `resolve`. */
const POSITIVE_TTL_MS = 30_000;
/** While the LISTEN connection is down no revoke is heard, so positives are trusted only briefly. */
const UNLISTENED_POSITIVE_TTL_MS = 1_000;
const NEGATIVE_TTL_MS = 5_000;
const CACHE_MAX = 10_000;
/** `last_used_at` is written at most this often per token, in one statement for all of them. */
const TOUCH_FLUSH_MS = 10_000;
const RECONNECT_MAX_MS = 30_000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const escapeLike = (s: string) => s.replace(/[\\%_]/g, '\\$&');
const unique = <T>(values: T[]) => [...new Set(values)];

export const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');
export const tokenHint = (token: string) => `kw_…${token.slice(-4)}`;

interface PrincipalRow {
  id: string;
  name: string;
  providers: string[] | null;
  models: string[] | null;
  rate_limit_per_minute: number | null;
  allowed_ips: string[] | null;
  expires_at: Date | null;
  scopes: string[] | null;
}

/** Adds to a Map with a size bound; the oldest entry goes first (entries also expire). */
function remember<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  if (map.size >= CACHE_MAX) map.delete(map.keys().next().value!);
  map.set(key, value);
}

/**
 * Access tokens: what applications present to the gateway instead of provider keys. Creating one
 * returns the token once; only its SHA-256 is stored. The gateway's hot path (`resolve`,
 * `ipAllowed`, `allows`, `touch`) answers from memory: lookups are cached by token hash, and a
 * revoke anywhere reaches every instance's cache through PostgreSQL LISTEN/NOTIFY.
 */
@Injectable()
export class AccessTokensService implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(AccessTokensService.name);

  private readonly positives = new Map<string, { principal: GatewayPrincipal; until: number }>();
  private readonly negatives = new Map<string, number>();
  private readonly lookups = new Map<string, Promise<GatewayPrincipal | null>>();
  /** Bumped by every invalidation; a lookup that raced one is answered but not cached. */
  private generation = 0;
  private readonly ranges = new WeakMap<GatewayPrincipal, IpRange[]>();

  private readonly lastUse = new Map<string, number>();
  private flushTimer?: NodeJS.Timeout;

  private listener: Client | null = null;
  private reconnectTimer?: NodeJS.Timeout;
  private reconnectDelay = 500;
  private closing = false;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly registry: ProviderRegistry,
    private readonly budgets: TokenBudgets,
  ) {}

  private get repo() {
    return this.dataSource.getRepository(AccessToken);
  }

  async onModuleInit(): Promise<void> {
    this.flushTimer = setInterval(() => void this.flushUsage(), TOUCH_FLUSH_MS);
    this.flushTimer.unref();
    await this.listen();
  }

  async onModuleDestroy(): Promise<void> {
    this.closing = true;
    clearInterval(this.flushTimer);
    clearTimeout(this.reconnectTimer);
    await this.flushUsage();
    const listener = this.listener;
    this.listener = null;
    await listener?.end().catch(() => undefined);
  }

  // ---- management -------------------------------------------------------------------------

  /** Creates a token; the returned `token` is the only time it exists outside the caller. */
  async create(dto: CreateAccessTokenDto, actor: string | null): Promise<{ accessToken: AccessToken; token: string }> {
    const errors: FieldError[] = [];
    const name = (dto.name ?? '').trim();
    if (name.length < 1 || name.length > 120)
      errors.push({ field: 'name', messages: ['name must be 1 to 120 characters'] });

    const providers = dto.providers ? unique(dto.providers) : null;
    const unknown = providers?.filter((p) => !this.registry.get(p)) ?? [];
    if (unknown.length > 0) {
      errors.push({
        field: 'providers',
        messages: [`unknown provider ${unknown.join(', ')}; known providers: ${this.registry.ids().join(', ')}`],
      });
    }

    const models = dto.models ? unique(dto.models.map((m) => m.trim()).filter(Boolean)) : null;

    let expiresAt: Date | null = null;
    if (dto.expiresAt !== undefined && dto.expiresAt !== null) {
      expiresAt = new Date(dto.expiresAt);
      if (Number.isNaN(expiresAt.getTime())) {
        errors.push({
          field: 'expiresAt',
          messages: ['expiresAt must be an ISO 8601 date-time such as 2027-01-31T00:00:00Z'],
        });
      } else if (expiresAt.getTime() <= Date.now()) {
        errors.push({ field: 'expiresAt', messages: ['expiresAt must be in the future'] });
      }
    }

    const rate = dto.rateLimitPerMinute ?? null;
    if (rate !== null && (!Number.isInteger(rate) || rate < 1 || rate > 1_000_000)) {
      errors.push({
        field: 'rateLimitPerMinute',
        messages: ['rateLimitPerMinute must be a whole number from 1 to 1000000'],
      });
    }

    let allowedIps: string[] | null = null;
    if (dto.allowedIps) {
      const normalized = dto.allowedIps.map((rule) => normalizeIpRule(rule));
      const bad = normalized.flatMap((rule, i) => (rule === null ? [i] : []));
      if (bad.length > 0) {
        errors.push({
          field: 'allowedIps',
          messages: [
            `allowedIps ${bad.map((i) => `[${i}]`).join(', ')}: each entry must be an IPv4 or IPv6 address or a CIDR range such as 10.0.0.0/8`,
          ],
        });
      } else {
        allowedIps = unique(normalized as string[]);
      }
    }
    const budgets = (dto.budgets ?? []) as BudgetInput[];
    errors.push(...this.budgets.check(budgets));
    if (errors.length > 0) throw new ValidationProblem(errors);

    const token = `kw_${randomBytes(32).toString('base64url')}`;
    const id = randomUUID();
    let budgetIds: string[] = [];
    await this.dataSource.transaction(async (manager) => {
      await manager.getRepository(AccessToken).insert({
        id,
        name,
        tokenHash: hashToken(token),
        tokenHint: tokenHint(token),
        providers,
        models,
        expiresAt,
        rateLimitPerMinute: rate,
        allowedIps,
        revokedAt: null,
        revokedBy: null,
        lastUsedAt: null,
        createdBy: actor,
        scopes: unique(dto.scopes ?? []),
      });
      budgetIds = await this.budgets.replace(manager, id, budgets);
    });
    if (budgetIds.length > 0) await this.budgets.changed(budgetIds);
    return { accessToken: await this.get(id), token };
  }

  /**
   * Changes a token's grants and budgets (the rest of a token is fixed: issue a new one). The
   * change reaches every instance's cache through the same NOTIFY as a revoke.
   */
  async update(id: string, dto: UpdateAccessTokenDto): Promise<AccessToken> {
    const token = await this.get(id);
    if (token.revokedAt) {
      throw conflict(
        'access-token-revoked',
        'Access token revoked',
        `This token was revoked at ${token.revokedAt.toISOString()}; a revoked token cannot be changed.`,
      );
    }
    if (dto.scopes === undefined && dto.budgets === undefined) {
      throw new ValidationProblem([{ field: 'scopes', messages: ['send scopes or budgets to change'] }]);
    }
    const budgets = dto.budgets as BudgetInput[] | undefined;
    if (budgets) {
      const errors = this.budgets.check(budgets);
      if (errors.length > 0) throw new ValidationProblem(errors);
    }
    let budgetIds: string[] = [];
    await this.dataSource.transaction(async (manager) => {
      if (dto.scopes !== undefined) {
        await manager.query(`UPDATE access_tokens SET scopes = $2 WHERE id = $1`, [id, unique(dto.scopes)]);
        await manager.query(`SELECT pg_notify($1, $2)`, [TOKENS_CHANNEL, id]);
      }
      if (budgets) budgetIds = await this.budgets.replace(manager, id, budgets);
    });
    if (dto.scopes !== undefined) this.invalidate(id);
    if (budgets) await this.budgets.changed(budgetIds);
    return this.get(id);
  }

  /** Budgets of these tokens with spend against budget. */
  budgetsOf(ids: string[]) {
    return this.budgets.of(ids);
  }

  async list(query: ListAccessTokensQuery): Promise<{ tokens: AccessToken[]; total: number }> {
    const qb = this.repo.createQueryBuilder('t');
    if (query.active === true) {
      qb.andWhere('t.revoked_at IS NULL').andWhere('(t.expires_at IS NULL OR t.expires_at > now())');
    } else if (query.active === false) {
      qb.andWhere('(t.revoked_at IS NOT NULL OR t.expires_at <= now())');
    }
    if (query.q) qb.andWhere('t.name ILIKE :q', { q: `%${escapeLike(query.q)}%` });
    const [tokens, total] = await qb
      .orderBy('t.created_at', 'DESC')
      .addOrderBy('t.id', 'ASC')
      .offset((query.page - 1) * query.pageSize)
      .limit(query.pageSize)
      .getManyAndCount();
    return { tokens, total };
  }

  async get(id: string): Promise<AccessToken> {
    const token = UUID.test(id) ? await this.repo.findOneBy({ id }) : null;
    if (!token) throw notFound('Access token', id);
    return token;
  }

  /** Name and hint of a token for the audit log; null when there is none. */
  async describe(id: string): Promise<Record<string, unknown> | null> {
    if (!UUID.test(id)) return null;
    const token = await this.repo.findOne({ where: { id }, select: { id: true, name: true, tokenHint: true } });
    return token ? { name: token.name, hint: token.tokenHint } : null;
  }

  /**
   * Immediate and permanent. The NOTIFY is part of the revoke's transaction, so other instances
   * hear of it exactly when it commits; this instance forgets the token before answering.
   */
  async revoke(id: string, actor: string | null): Promise<AccessToken> {
    if (!UUID.test(id)) throw notFound('Access token', id);
    await this.dataSource.transaction(async (manager) => {
      const [row] = await manager.query<{ revoked_at: Date | null }[]>(
        `SELECT revoked_at FROM access_tokens WHERE id = $1 FOR UPDATE`,
        [id],
      );
      if (!row) throw notFound('Access token', id);
      if (row.revoked_at) {
        throw conflict(
          'access-token-revoked',
          'Access token already revoked',
          `This token was revoked at ${row.revoked_at.toISOString()}; a revoked token stays revoked.`,
        );
      }
      await manager.query(`UPDATE access_tokens SET revoked_at = now(), revoked_by = $2 WHERE id = $1`, [id, actor]);
      await manager.query(`SELECT pg_notify($1, $2)`, [TOKENS_CHANNEL, id]);
    });
    this.invalidate(id);
    return this.get(id);
  }

  // ---- the gateway's hot path -------------------------------------------------------------

  /**
   * The principal a raw token stands for; null when it is malformed, unknown, revoked or
   * expired. Answers from memory when it can (positives for 30 s, negatives for 5 s, 10k of
   * each); concurrent misses for one token share a single query.
   */
  resolve(rawToken: string): Promise<GatewayPrincipal | null> {
    if (typeof rawToken !== 'string' || !ACCESS_TOKEN_PATTERN.test(rawToken)) return Promise.resolve(null);
    const hash = hashToken(rawToken);
    const now = Date.now();
    const positive = this.positives.get(hash);
    if (positive) {
      if (positive.until > now) {
        const expired = positive.principal.expiresAt !== null && positive.principal.expiresAt.getTime() <= now;
        return Promise.resolve(expired ? null : positive.principal);
      }
      this.positives.delete(hash);
    } else {
      const negativeUntil = this.negatives.get(hash);
      if (negativeUntil !== undefined) {
        if (negativeUntil > now) return Promise.resolve(null);
        this.negatives.delete(hash);
      }
    }
    let pending = this.lookups.get(hash);
    if (!pending) {
      const lookup = this.lookup(hash).finally(() => {
        if (this.lookups.get(hash) === lookup) this.lookups.delete(hash);
      });
      this.lookups.set(hash, lookup);
      pending = lookup;
    }
    return pending;
  }

  /** Null or empty `allowedIps` allows any address; `::ffff:a.b.c.d` is matched as IPv4. */
  ipAllowed(principal: GatewayPrincipal, ip: string): boolean {
    if (!principal.allowedIps || principal.allowedIps.length === 0) return true;
    let ranges = this.ranges.get(principal);
    if (!ranges) {
      ranges = principal.allowedIps.map(parseIpRule).filter((r): r is IpRange => r !== null);
      this.ranges.set(principal, ranges);
    }
    return ipInRanges(ip, ranges);
  }

  /**
   * Whether the token may call `provider`, and, when `model` is given, that model. A null list
   * allows all. Without `model` only the provider is checked: a caller that must refuse
   * model-less requests of a model-limited token checks `principal.models` itself.
   */
  allows(principal: GatewayPrincipal, provider: string, model?: string): boolean {
    if (principal.providers && !principal.providers.includes(provider)) return false;
    return model === undefined || !principal.models || principal.models.includes(model);
  }

  /** Records use for `last_used_at`; written in a batch every 10 s, never awaited. */
  touch(id: string): void {
    if (UUID.test(id)) this.lastUse.set(id, Date.now());
  }

  /** Writes the recorded uses now (the timer does it every 10 s; tests and shutdown call it). */
  async flushUsage(): Promise<void> {
    if (this.lastUse.size === 0) return;
    const batch = [...this.lastUse];
    this.lastUse.clear();
    try {
      await this.dataSource.query(
        `UPDATE access_tokens AS t SET last_used_at = v.at
           FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, at)
          WHERE t.id = v.id AND (t.last_used_at IS NULL OR t.last_used_at < v.at)`,
        [batch.map(([id]) => id), batch.map(([, at]) => new Date(at).toISOString())],
      );
    } catch (error) {
      this.logger.warn({ err: error }, `Could not record last use of ${batch.length} access token(s)`);
    }
  }

  // ---- cache ------------------------------------------------------------------------------

  private async lookup(hash: string): Promise<GatewayPrincipal | null> {
    const generation = this.generation;
    const [row] = await this.dataSource.query<PrincipalRow[]>(
      `SELECT id, name, providers, models, rate_limit_per_minute, allowed_ips, expires_at, scopes
         FROM access_tokens WHERE token_hash = $1 AND revoked_at IS NULL`,
      [hash],
    );
    const now = Date.now();
    const principal = row && !(row.expires_at && row.expires_at.getTime() <= now) ? toPrincipal(row) : null;
    if (generation === this.generation) {
      if (principal) {
        const ttl = this.listener ? POSITIVE_TTL_MS : UNLISTENED_POSITIVE_TTL_MS;
        remember(this.positives, hash, { principal, until: now + ttl });
      } else {
        remember(this.negatives, hash, now + NEGATIVE_TTL_MS);
      }
    }
    return principal;
  }

  /**
   * Forgets one token (by id), or every cached principal when `id` is undefined. Negatives stay:
   * no change ever makes an unknown or revoked token valid.
   */
  private invalidate(id?: string): void {
    this.generation += 1;
    this.lookups.clear();
    if (id === undefined) {
      this.positives.clear();
      return;
    }
    for (const [hash, entry] of this.positives) if (entry.principal.id === id) this.positives.delete(hash);
  }

  // ---- LISTEN/NOTIFY ----------------------------------------------------------------------

  /** Opens the dedicated LISTEN connection; on failure, retries with backoff. */
  private async listen(): Promise<void> {
    if (this.closing) return;
    const url = (this.dataSource.options as PostgresDataSourceOptions).url;
    if (!url) {
      this.logger.warn('No database URL to LISTEN with; cached tokens are trusted for 1 s only');
      return;
    }
    const client = new Client({ connectionString: url, application_name: 'keyward-token-listener' });
    let failed = false;
    const fail = (error?: Error) => {
      if (failed) return;
      failed = true;
      this.onListenerLost(client, error);
    };
    client.on('error', fail);
    client.on('end', () => fail());
    client.on('notification', (message) => {
      if (message.channel === TOKENS_CHANNEL) this.invalidate(message.payload || undefined);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${TOKENS_CHANNEL}`);
    } catch (error) {
      fail(error as Error);
      return;
    }
    if (failed) return;
    if (this.closing) {
      await client.end().catch(() => undefined);
      return;
    }
    this.listener = client;
    this.reconnectDelay = 500;
    // Revokes committed while no connection listened were missed: start from the database.
    this.invalidate();
  }

  private onListenerLost(client: Client, error?: Error): void {
    if (this.listener === client) this.listener = null;
    client.removeAllListeners('notification');
    void client.end().catch(() => undefined);
    if (this.closing) return;
    this.invalidate();
    this.logger.warn(
      `Token revocation listener lost${error ? ` (${error.message})` : ''}; reconnecting in ${this.reconnectDelay} ms`,
    );
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => void this.listen(), this.reconnectDelay);
    this.reconnectTimer.unref();
    this.reconnectDelay = Math.min(this.reconnectDelay * 2, RECONNECT_MAX_MS);
  }
}

function toPrincipal(row: PrincipalRow): GatewayPrincipal {
  // Frozen: the same object is handed to every request until the cache drops it.
  return Object.freeze({
    id: row.id,
    name: row.name,
    providers: row.providers ? Object.freeze([...row.providers]) : null,
    models: row.models ? Object.freeze([...row.models]) : null,
    rateLimitPerMinute: row.rate_limit_per_minute,
    allowedIps: row.allowed_ips ? Object.freeze([...row.allowed_ips]) : null,
    expiresAt: row.expires_at,
    scopes: new Set(row.scopes ?? []),
  }) as GatewayPrincipal;
}
