import { CallHandler, ExecutionContext, Injectable, Logger, NestInterceptor } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { InjectDataSource } from '@nestjs/typeorm';
import type { Request, Response } from 'express';
import { lastValueFrom, Observable } from 'rxjs';
import { DataSource } from 'typeorm';
import { ProblemException } from '../common/problem';
import { toProblem } from '../common/problem.filter';
import { inAmbientTransaction } from '../database/ambient-transaction';
import { auditContext } from './audit-context';
import { AUDIT_META, AuditMeta } from './audit.decorator';
import { AuditService } from './audit.service';
import type { AuditRecord } from './audit.types';

const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The handler threw: its changes are rolled back with the transaction. */
class HandlerFailed {
  constructor(readonly error: unknown) {}
}

/**
 * Holds a console handler's `res.end()` until the transaction has committed, so that nobody sees
 * "done" for a change that is then rolled back, and a redirect's next page sees the change.
 */
function holdResponse(res: Response) {
  const end = res.end.bind(res) as (...args: unknown[]) => Response;
  let held: unknown[] | null = null;
  let holding = true;
  res.end = ((...args: unknown[]) => {
    if (!holding) return end(...args);
    held = args;
    return res;
  }) as Response['end'];
  const stop = () => {
    holding = false;
    res.end = end as Response['end'];
  };
  return {
    release() {
      stop();
      if (held) end(...held);
    },
    /** Forgets a held response so that an error can be sent instead. */
    discard(): boolean {
      stop();
      const had = held !== null;
      held = null;
      for (const header of ['content-type', 'content-length', 'etag', 'location', 'hx-redirect', 'hx-trigger']) {
        res.removeHeader(header);
      }
      return had;
    },
  };
}

/**
 * Records every state-changing request that reached a handler — success or failure, through
 * the JSON API or the console — with who, from where, what, on which target, and the outcome.
 *
 * The handler runs in one database transaction that every service joins (see
 * ambient-transaction.ts), and the audit entry is written in that same transaction before it
 * commits: a change is never committed without its entry. If the entry cannot be written the
 * change is rolled back and the caller gets a 500. Denials by the guards happen before this
 * point and are recorded by the guards.
 */
@Injectable()
export class AuditInterceptor implements NestInterceptor {
  private readonly logger = new Logger('Audit');

  constructor(
    private readonly reflector: Reflector,
    private readonly audit: AuditService,
    @InjectDataSource() private readonly dataSource: DataSource,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const req = context.switchToHttp().getRequest<Request>();
    const res = context.switchToHttp().getResponse<Response>();
    const meta = this.reflector.get<AuditMeta | false | undefined>(AUDIT_META, context.getHandler());
    if (meta === false || READ_METHODS.has(req.method)) return next.handle();

    const action = meta?.action ?? `${context.getClass().name.replace(/Controller$/, '')}.${context.getHandler().name}`;
    const targetType = meta?.targetType;
    const idParam = meta?.idParam ?? 'id';
    const details = this.detailsFrom(req);
    // A deleted target can only be described before the handler runs; others after, so that
    // the entry names the target as it now is (a rotated key by its new hint).
    const paramId = req.params?.[idParam] as string | undefined;
    const before = req.method === 'DELETE' ? this.audit.describe(targetType, paramId) : Promise.resolve(null);
    const describe = async (id: string | null | undefined) => {
      const subject = (await before) ?? (await this.audit.describe(targetType, id));
      return {
        ...details,
        ...(subject ? { subject } : {}),
        ...((res.locals.auditDetails as Record<string, unknown> | undefined) ?? {}),
      };
    };
    const afterHandler = async (result: unknown): Promise<AuditRecord> => {
      // Console handlers answer failures with a re-rendered form (4xx) or a redirect that
      // carries a flash message; they mark the latter in res.locals.
      const failed = res.statusCode >= 400 || res.locals.auditFailed === true;
      const id =
        (req.params?.[idParam] as string | undefined) ??
        (res.locals.auditTargetId as string | undefined) ??
        (result as { id?: unknown } | undefined)?.id;
      const targetId = id === undefined || id === null ? null : String(id);
      return {
        action,
        outcome: failed ? 'failure' : 'success',
        target: targetType ? { type: targetType, id: targetId } : undefined,
        status: res.statusCode,
        reason: failed ? (res.locals.auditReason as string | undefined) : undefined,
        details: await describe(targetId),
      };
    };

    return new Observable((subscriber) => {
      const held = holdResponse(res);
      let record: AuditRecord | undefined;
      const work = inAmbientTransaction(this.dataSource, async () => {
        let result: unknown;
        try {
          result = await lastValueFrom(next.handle(), { defaultValue: undefined });
        } catch (error) {
          throw new HandlerFailed(error);
        }
        record = await afterHandler(result);
        await this.audit.record(auditContext(req), record);
        return result;
      });
      work.then(
        (result) => {
          held.release();
          subscriber.next(result);
          subscriber.complete();
        },
        async (failure: unknown) => {
          if (failure instanceof HandlerFailed) {
            const problem = toProblem(failure.error, req);
            await this.audit.recordSafely(auditContext(req), {
              action,
              outcome: 'failure',
              target: targetType ? { type: targetType, id: paramId ?? null } : undefined,
              status: problem.status,
              reason: problem.detail ? `${problem.title}: ${problem.detail}` : problem.title,
              details: await describe(paramId).catch(() => details),
            });
            held.release();
            subscriber.error(failure.error);
            return;
          }
          // The handler finished but its audit entry (or the commit) failed: nothing it changed
          // was kept. A refusal it already answered stands; a success must not be reported.
          this.logger.error({ err: failure, action }, 'Audit entry not written; the change was rolled back');
          if (record && record.outcome === 'failure') {
            await this.audit.recordSafely(auditContext(req), record);
            held.release();
            subscriber.complete();
            return;
          }
          await this.audit.recordSafely(auditContext(req), {
            action,
            outcome: 'failure',
            target: record?.target,
            status: 500,
            reason: 'rolled back: the audit entry could not be written',
          });
          held.discard();
          if (req.session?.flash) delete req.session.flash;
          subscriber.error(
            new ProblemException(
              500,
              'audit-unavailable',
              'Change not applied',
              'The audit entry for this change could not be written, so the change was rolled back. Try again.',
            ),
          );
        },
      );
    });
  }

  /** What was asked for, minus secrets (AuditService drops secret-named fields too). */
  private detailsFrom(req: Request): Record<string, unknown> {
    const body = req.body as unknown;
    if (!body || typeof body !== 'object' || Array.isArray(body)) return {};
    const { _csrf: _ignored, ...rest } = body as Record<string, unknown>;
    return rest;
  }
}
