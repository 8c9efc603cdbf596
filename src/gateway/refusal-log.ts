import { Injectable, Logger, OnApplicationShutdown, Optional } from '@nestjs/common';
import { ShutdownService } from '../lifecycle/shutdown.service';
import { AuditService } from '../audit/audit.service';

interface Folded {
  reason: string;
  status: number;
  tokenId: string | null;
  tokenHint: string | null;
  minute: string;
  count: number;
  ips: Set<string>;
  firstAt: Date;
  lastAt: Date;
}

const FLUSH_MS = 5_000;
const MAX_IPS = 5;
/** Distinct (token, reason, minute) groups held before an early flush; bounds memory in a flood. */
const MAX_GROUPS = 1_000;

/**
 * Every gateway request Keyward turns away is audited — bad, revoked or expired tokens, wrong
 * addresses, rate limits, scope refusals — but identical refusals are folded into one entry per
 * token, reason and minute that carries a count, so a flood of bad requests cannot fill the log
 * or slow the gateway (nothing here awaits the database on the request path).
 */
@Injectable()
export class RefusalLog implements OnApplicationShutdown {
  private readonly logger = new Logger('Gateway');
  private groups = new Map<string, Folded>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly audit: AuditService,
    @Optional() shutdown?: ShutdownService,
  ) {
    shutdown?.register('flush', 'gateway refusals', () => this.flush());
  }

  note(reason: string, status: number, token: { id: string | null; hint: string | null }, ip: string): void {
    const now = new Date();
    const minute = now.toISOString().slice(0, 16);
    const id = `${token.id ?? token.hint ?? '-'}|${reason}|${minute}`;
    let group = this.groups.get(id);
    if (!group) {
      group = {
        reason,
        status,
        tokenId: token.id,
        tokenHint: token.hint,
        minute,
        count: 0,
        ips: new Set(),
        firstAt: now,
        lastAt: now,
      };
      this.groups.set(id, group);
    }
    group.count++;
    group.lastAt = now;
    if (group.ips.size < MAX_IPS) group.ips.add(ip);
    if (this.groups.size >= MAX_GROUPS) void this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => void this.flush(), FLUSH_MS);
      this.timer.unref();
    }
  }

  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const groups = [...this.groups.values()];
    this.groups = new Map();
    for (const g of groups) {
      await this.audit.recordSafely(
        { actor: null, ip: [...g.ips][0] ?? null, userAgent: null },
        {
          action: 'gateway.refused',
          outcome: 'denied',
          status: g.status,
          reason: g.reason,
          target: g.tokenId ? { type: 'AccessToken', id: g.tokenId } : undefined,
          details: {
            count: g.count,
            hint: g.tokenHint,
            ips: [...g.ips],
            minute: g.minute,
            firstAt: g.firstAt.toISOString(),
            lastAt: g.lastAt.toISOString(),
          },
        },
      );
    }
    if (groups.length > 0) this.logger.debug(`Audited ${groups.length} folded gateway refusal(s)`);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.flush();
  }
}
