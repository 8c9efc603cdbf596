import { CallHandler, ExecutionContext, Injectable, NestInterceptor } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request, Response } from 'express';
import { catchError, from, mergeMap, Observable, throwError } from 'rxjs';
import { toProblem } from '../common/problem.filter';
import { auditContext } from './audit-context';
import { AUDIT_META, AuditMeta } from './audit.decorator';
import { AuditService } from './audit.service';

const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Records every state-changing request that reached a handler — success or failure, through
 * the JSON API or the console — with who, from where, what, on which target, and the outcome.
 * Denials by the guards happen before this point and are recorded by the guards.
 */
@Injectable()
export class AuditInterceptor implements NestInterceptor {
  constructor(
    private readonly reflector: Reflector,
    private readonly audit: AuditService,
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

    return next.handle().pipe(
      mergeMap((result) => {
        // Console handlers answer failures with a re-rendered form (4xx) or a redirect that
        // carries a flash message; they mark the latter in res.locals.
        const failed = res.statusCode >= 400 || res.locals.auditFailed === true;
        const id =
          (req.params?.[idParam] as string | undefined) ??
          (res.locals.auditTargetId as string | undefined) ??
          (result as { id?: unknown } | undefined)?.id;
        return from(
          describe(id === undefined ? null : String(id)).then((described) =>
            this.audit.record(auditContext(req), {
              action,
              outcome: failed ? 'failure' : 'success',
              target: targetType ? { type: targetType, id: id === undefined ? null : String(id) } : undefined,
              status: res.statusCode,
              reason: failed ? (res.locals.auditReason as string | undefined) : undefined,
              details: described,
            }),
          ),
        ).pipe(mergeMap(() => from([result])));
      }),
      catchError((error: unknown) => {
        const problem = toProblem(error, req);
        const id = req.params?.[idParam] as string | undefined;
        return from(
          describe(id).then((described) =>
            this.audit.recordSafely(auditContext(req), {
              action,
              outcome: 'failure',
              target: targetType ? { type: targetType, id: id ?? null } : undefined,
              status: problem.status,
              reason: problem.detail ? `${problem.title}: ${problem.detail}` : problem.title,
              details: described,
            }),
          ),
        ).pipe(mergeMap(() => throwError(() => error)));
      }),
    );
  }

  /** What was asked for, minus secrets (AuditService drops secret-named fields too). */
  private detailsFrom(req: Request): Record<string, unknown> {
    const body = req.body as unknown;
    if (!body || typeof body !== 'object' || Array.isArray(body)) return {};
    const { _csrf: _ignored, ...rest } = body as Record<string, unknown>;
    return rest;
  }
}
