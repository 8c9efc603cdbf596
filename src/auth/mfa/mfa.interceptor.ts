import { CallHandler, ExecutionContext, Inject, Injectable, NestInterceptor } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request, Response } from 'express';
import { from, mergeMap, Observable, of } from 'rxjs';
import { auditContext } from '../../audit/audit-context';
import { AuditService } from '../../audit/audit.service';
import { isHtmx, isMachineRequest, redirect } from '../../common/http';
import { ProblemException } from '../../common/problem';
import { safeLocalPath } from '../../common/problem.filter';
import { flash, render } from '../../common/views';
import type { KeywardConfig } from '../../config/config';
import { KEYWARD_CONFIG } from '../../config/config.constants';
import type { AuthUser } from '../auth.types';
import { MfaService } from './mfa.service';
import { REQUIRES_MFA, SKIP_MFA_ENROLMENT } from './requires-mfa.decorator';

/** The header API clients (and htmx, if they like) send a code in. */
export const MFA_HEADER = 'x-keyward-mfa';
/** The form field the console's code prompt sends. Named so the audit log drops its value. */
export const MFA_FIELD = 'mfaPasscode';

// Fields never echoed back into the prompt's re-submission (same rule as the audit log's).
const SECRET_FIELD = /(pass(word)?|secret|token|authorization|cookie|key$|plaintext|credential)/i;

type Refusal = { reason: 'not-enrolled' | 'required' | 'wrong-code'; detail: string };

/**
 * Step-up for sensitive operations (routes marked `@RequiresMfa()`): a second factor verified
 * within the last N minutes, or a code with the request. Where the "verified at" lives:
 * - console: in the session (`mfaVerifiedAt`), set by the code prompt or the sign-in;
 * - JWT clients: in the token (`mfa_at`, when it was minted with a code), else per request
 *   through the `x-keyward-mfa` header.
 *
 * A user with no second factor passes unless an owner has made MFA mandatory for everyone;
 * then the API answers 401 mfa-required "enrol a second factor" and the console sends them to
 * enrolment — which is also where every console page sends such a user after sign-in.
 */
@Injectable()
export class MfaInterceptor implements NestInterceptor {
  constructor(
    private readonly reflector: Reflector,
    private readonly mfa: MfaService,
    private readonly audit: AuditService,
    @Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const req = context.switchToHttp().getRequest<Request>();
    const res = context.switchToHttp().getResponse<Response>();
    const user = req.authUser;
    if (!user) return next.handle();

    // Pending account chores (set at sign-in) come first on every console page but their own.
    const exempt = this.reflector.getAllAndOverride<boolean>(SKIP_MFA_ENROLMENT, [
      context.getHandler(),
      context.getClass(),
    ]);
    if (user.via === 'session' && !exempt && (req.session?.mfaEnrolmentRequired || user.mustChangePassword)) {
      redirect(req, res, '/account');
      return of(undefined);
    }

    if (!this.reflector.get<boolean>(REQUIRES_MFA, context.getHandler())) return next.handle();
    return from(this.check(req, user)).pipe(
      mergeMap((refusal) => {
        if (!refusal) return next.handle();
        return from(this.refuse(req, res, refusal));
      }),
    );
  }

  /** Null when the request may go on; otherwise why not. */
  private async check(req: Request, user: AuthUser): Promise<Refusal | null> {
    const body = req.body as Record<string, unknown> | undefined;
    const fromForm = body && typeof body[MFA_FIELD] === 'string' ? (body[MFA_FIELD] as string) : undefined;
    if (body && MFA_FIELD in body) delete body[MFA_FIELD];
    const code = req.get(MFA_HEADER) ?? fromForm;

    if (!(await this.mfa.isEnrolled(user.id))) {
      if (!(await this.mfa.requiredForAll())) return null;
      return {
        reason: 'not-enrolled',
        detail: 'This operation needs a second factor: enrol a second factor (an authenticator app) first.',
      };
    }
    const windowMs = this.config.mfa.stepUpMinutes * 60_000;
    const verifiedAt = user.via === 'session' ? req.session?.mfaVerifiedAt : user.mfaAt;
    if (verifiedAt && Date.now() - verifiedAt <= windowMs) return null;

    if (!code) {
      return {
        reason: 'required',
        detail: `This operation needs a second factor verified within the last ${this.config.mfa.stepUpMinutes} minutes: send the current code in the ${MFA_HEADER} header.`,
      };
    }
    if (await this.mfa.verify(user, code, auditContext(req))) {
      if (user.via === 'session' && req.session) req.session.mfaVerifiedAt = Date.now();
      return null;
    }
    return {
      reason: 'wrong-code',
      detail: 'That code is wrong or was already used; enter the current code or an unused recovery code.',
    };
  }

  private async refuse(req: Request, res: Response, refusal: Refusal): Promise<undefined> {
    await this.audit.record(auditContext(req), {
      action: 'mfa.required',
      outcome: 'denied',
      status: 401,
      reason: refusal.reason,
      details: { method: req.method, path: req.path },
    });
    if (isMachineRequest(req) || !req.accepts('html')) {
      throw new ProblemException(401, 'mfa-required', 'Second factor required', refusal.detail, {
        header: MFA_HEADER,
        stepUpMinutes: this.config.mfa.stepUpMinutes,
      });
    }
    if (refusal.reason === 'not-enrolled') {
      flash(req, 'error', 'This operation needs a second factor: set one up first.');
      redirect(req, res, '/account/mfa');
      return undefined;
    }
    this.renderPrompt(req, res, refusal);
    return undefined;
  }

  /**
   * The console's code prompt. With htmx it takes the place of the element the action was to
   * swap (so the continued action's answer lands where it would have); without JavaScript it
   * is a page whose form continues the action. Either way it re-sends the original fields,
   * except secrets, which are asked for again rather than echoed into the page.
   */
  private renderPrompt(req: Request, res: Response, refusal: Refusal): void {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const fields: { name: string; value: string }[] = [];
    const secrets: string[] = [];
    for (const [name, value] of Object.entries(body)) {
      if (name === '_csrf' || name === MFA_FIELD) continue;
      if (SECRET_FIELD.test(name)) {
        secrets.push(name);
        continue;
      }
      for (const v of Array.isArray(value) ? value : [value]) {
        if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') {
          fields.push({ name, value: String(v) });
        }
      }
    }
    const target = /^([a-z][a-z0-9-]*)#([A-Za-z0-9_%-]+)$/.exec(req.get('hx-target') ?? '');
    const targetId = target ? decodeURIComponent(target[2]) : undefined;
    const data = {
      title: 'Confirm with your second factor',
      action: req.originalUrl,
      fields,
      secrets,
      wrongCode: refusal.reason === 'wrong-code',
      stepUpMinutes: this.config.mfa.stepUpMinutes,
      cancel: safeLocalPath(req.get('hx-current-url')) ?? safeLocalPath(req.get('referer')) ?? '/admin',
      inPlace: isHtmx(req) && targetId !== undefined,
      targetId,
      row: target?.[1] === 'tr',
    };
    if (isHtmx(req)) {
      res.setHeader('HX-Retarget', data.inPlace ? `#${targetId}` : '#flash');
      res.setHeader('HX-Reswap', data.inPlace ? 'outerHTML' : 'innerHTML');
    }
    render(req, res, 'mfa/prompt', data, { partial: 'mfa/prompt', status: 401 });
  }
}
