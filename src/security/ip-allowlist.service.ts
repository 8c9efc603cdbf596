import { Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { ipInRanges, normalizeIpRule, parseIpRule, type IpRange } from '../access-tokens/ip-rules';
import { AuditService } from '../audit/audit.service';
import type { AuditContext } from '../audit/audit.types';
import type { Role } from '../auth/roles';
import { conflict, notFound, ProblemException, ValidationProblem } from '../common/problem';

export interface IpAllowRule {
  id: string;
  role: Role | null;
  userId: string | null;
  userEmail: string | null;
  cidr: string;
  note: string | null;
  createdBy: string | null;
  createdAt: Date;
}

export interface NewIpAllowRule {
  role?: Role;
  userId?: string;
  cidr: string;
  note?: string;
}

interface Person {
  id: string;
  role: string;
}

/** How long rules are trusted from the cache; changes on this instance invalidate it at once. */
const CACHE_MS = 10_000;
/** One audit entry per person and address per minute; repeats are counted into the next. */
const FOLD_MS = 60_000;

/**
 * Where people may use the console and the admin API from. Rules are per role and per user; a
 * person with no rule for their role or themselves may come from anywhere, one with rules only
 * from an address one of them matches. A change that would leave the caller, or every owner,
 * unable to come back is refused.
 */
@Injectable()
export class IpAllowlistService {
  private readonly logger = new Logger('IpAllowlist');
  private cache: { at: number; rules: (IpAllowRule & { range: IpRange })[] } | null = null;
  private readonly folded = new Map<string, { at: number; repeats: number }>();

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly audit: AuditService,
  ) {}

  async list(manager: Pick<DataSource, 'query'> = this.dataSource): Promise<IpAllowRule[]> {
    const rows = await manager.query<
      {
        id: string;
        role: Role | null;
        user_id: string | null;
        email: string | null;
        cidr: string;
        note: string | null;
        created_by: string | null;
        created_at: Date;
      }[]
    >(
      `SELECT r.id, r.role, r.user_id, u.email, r.cidr, r.note, r.created_by, r.created_at
         FROM ip_allow_rules r LEFT JOIN users u ON u.id = r.user_id
        ORDER BY r.role NULLS LAST, u.email, r.created_at`,
    );
    return rows.map((r) => ({
      id: r.id,
      role: r.role,
      userId: r.user_id,
      userEmail: r.email,
      cidr: r.cidr,
      note: r.note,
      createdBy: r.created_by,
      createdAt: r.created_at,
    }));
  }

  private async rules(): Promise<(IpAllowRule & { range: IpRange })[]> {
    if (this.cache && Date.now() - this.cache.at < CACHE_MS) return this.cache.rules;
    const rules = (await this.list()).flatMap((rule) => {
      const range = parseIpRule(rule.cidr);
      return range ? [{ ...rule, range }] : [];
    });
    this.cache = { at: Date.now(), rules };
    return rules;
  }

  invalidate(): void {
    this.cache = null;
  }

  /** Whether `person` may come from `ip` under `rules` (no rule for them: anywhere). */
  static allows(
    rules: readonly { role: string | null; userId: string | null; range: IpRange }[],
    person: Person,
    ip: string | null,
  ): boolean {
    const theirs = rules.filter((r) => r.userId === person.id || (r.role !== null && r.role === person.role));
    if (theirs.length === 0) return true;
    return (
      ip !== null &&
      ipInRanges(
        ip,
        theirs.map((r) => r.range),
      )
    );
  }

  async isAllowed(person: Person, ip: string | null): Promise<boolean> {
    return IpAllowlistService.allows(await this.rules(), person, ip);
  }

  /**
   * Refuses (403) a person outside their allowlist, with an audit entry — folded to one per
   * person and address per minute, so a script hammering from outside cannot flood the log.
   */
  async refuseIfOutside(person: Person & { email: string }, context: AuditContext, what: string): Promise<void> {
    if (await this.isAllowed(person, context.ip)) return;
    const key = `${person.id}|${context.ip}`;
    const now = Date.now();
    const fold = this.folded.get(key);
    if (fold && now - fold.at < FOLD_MS) {
      fold.repeats += 1;
    } else {
      if (this.folded.size > 10_000) this.folded.clear();
      this.folded.set(key, { at: now, repeats: 0 });
      await this.audit.recordSafely(
        { ...context, actor: { id: person.id, email: person.email, role: person.role } },
        {
          action: 'access.ip_denied',
          outcome: 'denied',
          status: 403,
          reason: `address ${context.ip ?? 'unknown'} is outside the allowlist for this ${person.role}`,
          details: { request: what, ...(fold?.repeats ? { repeatsSinceLastEntry: fold.repeats } : {}) },
        },
      );
    }
    throw new ProblemException(
      403,
      'ip-not-allowed',
      'Not allowed from this address',
      `Your account may not be used from ${context.ip ?? 'this address'}. Ask an owner to add it to the IP allowlist.`,
    );
  }

  async create(input: NewIpAllowRule, caller: Person & { ip: string | null }): Promise<IpAllowRule> {
    const cidr = normalizeIpRule(input.cidr ?? '');
    const errors = [];
    if (!cidr) {
      errors.push({
        field: 'cidr',
        messages: ['cidr must be an IPv4 or IPv6 address or CIDR range such as 203.0.113.0/24'],
      });
    }
    if ((input.role === undefined) === (input.userId === undefined)) {
      errors.push({ field: 'role', messages: ['give either role or userId: a rule is for one role or one user'] });
    }
    if (errors.length > 0) throw new ValidationProblem(errors);
    if (input.userId) {
      const [user] = await this.dataSource.query<{ id: string }[]>(`SELECT id FROM users WHERE id = $1`, [
        input.userId,
      ]);
      if (!user) throw new ValidationProblem([{ field: 'userId', messages: ['no user with this id'] }]);
    }
    return this.dataSource.transaction(async (manager) => {
      // One change to the rules at a time, so two admins cannot each pass the lockout check.
      await manager.query(`LOCK TABLE ip_allow_rules IN SHARE ROW EXCLUSIVE MODE`);
      const existing = await manager.query<{ id: string }[]>(
        `SELECT id FROM ip_allow_rules WHERE cidr = $1 AND (role = $2 OR user_id = $3)`,
        [cidr, input.role ?? null, input.userId ?? null],
      );
      if (existing.length > 0) throw conflict('ip-rule-exists', 'Rule exists', 'This rule exists already.');
      const current = (await this.list(manager)).map((r) => ({ ...r, range: parseIpRule(r.cidr)! }));
      const next = [...current, { role: input.role ?? null, userId: input.userId ?? null, range: parseIpRule(cidr!)! }];
      await this.refuseLockout(next, caller);
      const [row] = await manager.query<{ id: string }[]>(
        `INSERT INTO ip_allow_rules (role, user_id, cidr, note, created_by) VALUES ($1, $2, $3, $4, $5) RETURNING id`,
        [input.role ?? null, input.userId ?? null, cidr, input.note?.trim() || null, caller.id],
      );
      this.invalidate();
      return (await this.list(manager)).find((r) => r.id === row.id)!;
    });
  }

  async remove(id: string, caller: Person & { ip: string | null }): Promise<IpAllowRule> {
    return this.dataSource.transaction(async (manager) => {
      await manager.query(`LOCK TABLE ip_allow_rules IN SHARE ROW EXCLUSIVE MODE`);
      const current = (await this.list(manager)).map((r) => ({ ...r, range: parseIpRule(r.cidr)! }));
      const rule = current.find((r) => r.id === id);
      if (!rule) throw notFound('IP rule', id);
      // Removing the last rule of a role or user opens it to every address, which locks no
      // one out; removing one of several narrows it, which might.
      await this.refuseLockout(
        current.filter((r) => r.id !== id),
        caller,
      );
      await manager.query(`DELETE FROM ip_allow_rules WHERE id = $1`, [id]);
      this.invalidate();
      return rule;
    });
  }

  /**
   * The caller must still be allowed from the address they are using now, and at least one
   * active owner from the address of their last sign-in (where they will most likely be next).
   */
  private async refuseLockout(
    rules: { role: string | null; userId: string | null; range: IpRange }[],
    caller: Person & { ip: string | null },
  ): Promise<void> {
    if (!IpAllowlistService.allows(rules, caller, caller.ip)) {
      throw conflict(
        'ip-rule-locks-out-caller',
        'This would lock you out',
        `After this change your own address (${caller.ip ?? 'unknown'}) would be refused. Add a rule that allows it first.`,
      );
    }
    const owners = await this.dataSource.query<{ id: string; ip: string | null }[]>(
      `SELECT u.id,
              (SELECT a.ip FROM audit_log a WHERE a.actor_id = u.id AND a.action = 'auth.signin'
                 AND a.outcome = 'success' ORDER BY a.seq DESC LIMIT 1) AS ip
         FROM users u WHERE u.role = 'owner' AND u.disabled_at IS NULL`,
    );
    const ownerCanReturn = owners.some((owner) =>
      IpAllowlistService.allows(rules, { id: owner.id, role: 'owner' }, owner.id === caller.id ? caller.ip : owner.ip),
    );
    if (owners.length > 0 && !ownerCanReturn) {
      throw conflict(
        'ip-rule-locks-out-owners',
        'This would lock out every owner',
        'After this change no active owner could sign in from the address they last used. Keep at least one owner able to come back.',
      );
    }
    this.logger.debug('IP rule change keeps the caller and an owner in');
  }
}
