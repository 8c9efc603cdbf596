import { Injectable, Logger, OnModuleDestroy, OnModuleInit, Optional } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { hash, randomBytes, randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { conflict, type FieldError, notFound, ValidationProblem } from '../common/problem';
import { ChangeFeedService, REFRESH_AHEAD_AT } from '../database/change-feed';
import { DatabaseHealth } from '../database/database-health';
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

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const escapeLike = (s: string) => s.replace(/[\\%_]/g, '\\$&');
const unique = <T>(values: T[]) => [...new Set(values)];

// crypto.hash: the one-shot form, without a Hash object per call (the gateway hashes every token it sees).
export const hashToken = (token: string) => hash('sha256', token, 'hex');
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
 * revoke anywhere reaches every instance's cache through the change feed (`keyward_tokens`).
 * While PostgreSQL is unreachable, a token that resolved before keeps resolving to its last
 * known principal (within the outage window, see DatabaseHealth); an unknown one gets
 * DatabaseUnavailableError (503), since nobody can tell whether it is valid.
 */
@Injectable()
export class AccessTokensService implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(AccessTokensService.name);

  private readonly positives = new Map<string, { principal: GatewayPrincipal; until: number; refreshAt: number }>();
  private readonly negatives = new Map<string, number>();
  private readonly lookups = new Map<string, Promise<GatewayPrincipal | null>>();
  /** Bumped by every invalidation; a lookup that raced one is answered but not cached. */
  private generation = 0;
  private readonly ranges = new WeakMap<GatewayPrincipal, IpRange[]>();

  /** By token hash, the last principal the database gave: what an outage serves. */
  private readonly lastGood = new Map<string, GatewayPrincipal>();

  private readonly lastUse = new Map<string, number>();
  private flushTimer?: NodeJS.Timeout;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly registry: ProviderRegistry,
    private readonly budgets: TokenBudgets,
    @Optional() private readonly feed?: ChangeFeedService,
    @Optional() private readonly health?: DatabaseHealth,
  ) {}

  private get repo() {
    return this.dataSource.getRepository(AccessToken);
  }

  onModuleInit(): void {
    this.flushTimer = setInterval(() => void this.flushUsage(), TOUCH_FLUSH_MS);
    this.flushTimer.unref();
    this.feed?.subscribe(TOKENS_CHANNEL, (id) => this.invalidate(id || undefined));
    // Revokes committed while nobody listened were missed: start from the database.
    this.feed?.onReconnect(() => this.invalidate());
  }

  async onModuleDestroy(): Promise<void> {
    clearInterval(this.flushTimer);
    await this.flushUsage();
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
        // Looked up again in the background in the last quarter of its life, so that under steady
        // traffic no call waits for the database when the entry runs out.
        if (positive.refreshAt <= now && !this.lookups.has(hash) && this.health?.up !== false) this.refreshAhead(hash);
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
    // While the database is away the uses stay here, and are written once it is back.
    if (this.lastUse.size === 0 || (this.health && !this.health.up)) return;
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
      this.health?.reportFailure(error);
      for (const [id, at] of batch) if ((this.lastUse.get(id) ?? 0) < at) this.lastUse.set(id, at);
      if (this.health?.up !== false) {
        this.logger.warn({ err: error }, `Could not record last use of ${batch.length} access token(s)`);
      }
    }
  }

  // ---- cache ------------------------------------------------------------------------------

  private async lookup(hash: string): Promise<GatewayPrincipal | null> {
    const generation = this.generation;
    const stale = this.lastGood.get(hash);
    if (this.health && !this.health.up) return this.fromStale(stale);
    let row: PrincipalRow | undefined;
    try {
      const query = this.dataSource.query<PrincipalRow[]>(
        `SELECT id, name, providers, models, rate_limit_per_minute, allowed_ips, expires_at, scopes
           FROM access_tokens WHERE token_hash = $1 AND revoked_at IS NULL`,
        [hash],
      );
      // With a last good principal to fall back on, the lookup may not wait on a hung server.
      [row] = await (this.health && stale ? this.health.guard(query) : query);
    } catch (error) {
      this.health?.reportFailure(error);
      if (!this.health) throw error;
      return this.fromStale(this.lastGood.get(hash));
    }
    const now = Date.now();
    const principal = row && !(row.expires_at && row.expires_at.getTime() <= now) ? toPrincipal(row) : null;
    if (generation === this.generation) {
      if (principal) {
        const ttl = this.feed?.isListening ? POSITIVE_TTL_MS : UNLISTENED_POSITIVE_TTL_MS;
        remember(this.positives, hash, { principal, until: now + ttl, refreshAt: now + ttl * REFRESH_AHEAD_AT });
        remember(this.lastGood, hash, principal);
      } else {
        remember(this.negatives, hash, now + NEGATIVE_TTL_MS);
        // A refresh ahead of expiry that finds the token gone ends its positive entry at once.
        this.positives.delete(hash);
        this.lastGood.delete(hash);
      }
    }
    return principal;
  }

  /** A lookup nobody waits for; a call that misses meanwhile joins it (single flight). */
  private refreshAhead(hash: string): void {
    const lookup: Promise<GatewayPrincipal | null> = this.lookup(hash)
      .catch(() => null)
      .finally(() => {
        if (this.lookups.get(hash) === lookup) this.lookups.delete(hash);
      });
    this.lookups.set(hash, lookup);
  }

  /** During an outage: the token's last known principal, or 503 when there is none (or the window passed). */
  private fromStale(stale: GatewayPrincipal | undefined): GatewayPrincipal | null {
    if (!stale || !this.health!.canServeStale()) throw this.health!.unavailable();
    if (stale.expiresAt !== null && stale.expiresAt.getTime() <= Date.now()) return null;
    return stale;
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
    for (const [hash, principal] of this.lastGood) if (principal.id === id) this.lastGood.delete(hash);
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
