import { type CallHandler, type ExecutionContext, Injectable, type NestInterceptor } from '@nestjs/common';
import type { Request, Response } from 'express';
import { from, type Observable, switchMap } from 'rxjs';
import { isMachineRequest } from '../common/http';
import { AlertsService } from './alerts.service';

/**
 * Puts the open-alert count where the layout's navigation badge reads it (`res.locals`), for
 * console pages of people who may read alerts. The count is cached briefly by the service.
 */
@Injectable()
export class OpenAlertsInterceptor implements NestInterceptor {
  constructor(private readonly alerts: AlertsService) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const req = context.switchToHttp().getRequest<Request>();
    const res = context.switchToHttp().getResponse<Response>();
    if (isMachineRequest(req) || !req.ability?.can('read', 'Alert')) return next.handle();
    return from(
      this.alerts
        .openCount()
        .then((count) => (res.locals.openAlertCount = count))
        .catch(() => undefined),
    ).pipe(switchMap(() => next.handle()));
  }
}
