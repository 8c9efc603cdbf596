import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import { ThrottlerException } from '@nestjs/throttler';
import type { Request, Response } from 'express';
import { SignInRequired } from '../auth/sign-in-required';
import { isHtmx, isMachineRequest, redirect } from './http';
import { defaultProblem, ProblemDetails, ProblemException, problemType } from './problem';

interface BodyParserError {
  type?: string;
  status?: number;
  expose?: boolean;
}

const BODY_ERRORS: Record<string, [number, string, string]> = {
  'entity.parse.failed': [400, 'malformed-body', 'Malformed JSON or form body'],
  'entity.too.large': [413, 'payload-too-large', 'Request body too large'],
  'encoding.unsupported': [415, 'unsupported-encoding', 'Unsupported content encoding'],
  'charset.unsupported': [415, 'unsupported-charset', 'Unsupported charset'],
  'request.aborted': [400, 'request-aborted', 'Request aborted'],
};

const BODY_DETAILS: Record<string, string> = {
  'malformed-body': 'The body is not valid JSON (or not valid form data).',
  'payload-too-large': 'The body is larger than this endpoint accepts.',
};

/** Maps anything thrown into a problem document; never leaks stacks or internal messages. */
export function toProblem(exception: unknown, req: Request): ProblemDetails {
  let problem: ProblemDetails;
  // Nest wraps body-parser's errors in an HttpException and keeps the original as its cause.
  const bodyError =
    (exception as BodyParserError | undefined)?.type ??
    (exception as { cause?: BodyParserError } | undefined)?.cause?.type;
  if (exception instanceof ProblemException) {
    problem = { ...exception.problem };
  } else if (exception instanceof ThrottlerException) {
    problem = { ...defaultProblem(429), status: 429, detail: 'Too many requests; wait and try again.' };
  } else if (bodyError && BODY_ERRORS[bodyError]) {
    const [status, slug, title] = BODY_ERRORS[bodyError];
    problem = { type: problemType(slug), title, status, detail: BODY_DETAILS[slug] };
  } else if ((exception as { code?: string } | undefined)?.code === 'EBADCSRFTOKEN') {
    problem = {
      type: problemType('csrf-rejected'),
      title: 'Form expired or forged',
      status: 403,
      detail: 'The request did not carry a valid CSRF token. Reload the page and try again.',
    };
  } else if (exception instanceof HttpException) {
    const status = exception.getStatus();
    const body = exception.getResponse();
    const message =
      typeof body === 'string'
        ? body
        : typeof (body as { message?: unknown }).message === 'string'
          ? (body as { message: string }).message
          : undefined;
    problem = { ...defaultProblem(status), status };
    if (status === 404 && message?.startsWith('Cannot ')) {
      problem.detail = `No route ${req.method} ${req.path}.`;
    } else if (message && status < 500) {
      problem.detail = message;
    }
  } else {
    problem = { ...defaultProblem(500), status: 500, detail: 'Something went wrong on our side.' };
  }
  problem.instance = req.path;
  const requestId = (req as Request & { id?: unknown }).id;
  if (requestId !== undefined) problem.requestId = String(requestId);
  return problem;
}

@Catch()
export class ProblemFilter implements ExceptionFilter {
  private readonly logger = new Logger('Errors');

  catch(exception: unknown, host: ArgumentsHost): void {
    const req = host.switchToHttp().getRequest<Request>();
    const res = host.switchToHttp().getResponse<Response>();
    if (exception instanceof SignInRequired && !res.headersSent) {
      // For htmx the request URL is a fragment; come back to the page the person was on.
      const current = isHtmx(req) ? safeLocalPath(req.get('hx-current-url')) : exception.next;
      const next = current && current !== '/' ? `?next=${encodeURIComponent(current)}` : '';
      redirect(req, res, `/login${next}`);
      return;
    }
    const problem = toProblem(exception, req);

    if (problem.status >= 500) {
      this.logger.error(
        { err: exception, requestId: problem.requestId },
        `Unhandled error on ${req.method} ${req.path}`,
      );
    }
    if (res.headersSent) {
      res.end();
      return;
    }
    if (problem.status === 429 && !res.getHeader('retry-after')) res.setHeader('Retry-After', '60');

    if (isMachineRequest(req) || !req.accepts('html')) {
      res.status(problem.status).type('application/problem+json').send(JSON.stringify(problem));
      return;
    }
    res.setHeader('Vary', 'HX-Request');
    if (isHtmx(req)) {
      // Show the message in the page's flash area instead of swapping it into a table row.
      res.setHeader('HX-Retarget', '#flash');
      res.setHeader('HX-Reswap', 'innerHTML');
      res.status(problem.status).render('partials/common/flash', { layout: false, error: problem });
      return;
    }
    res.status(problem.status).render('pages/error', {
      title: problem.title,
      problem,
      user: req.authUser,
      csrfToken: typeof req.csrfToken === 'function' && req.session ? req.csrfToken() : undefined,
    });
  }
}

/** The path and query of a same-site URL, or undefined; never an open redirect. */
export function safeLocalPath(value: string | undefined | null): string | undefined {
  if (!value) return undefined;
  try {
    const url = new URL(value, 'http://local.invalid');
    const path = url.pathname + url.search;
    return path.startsWith('/') && !path.startsWith('//') ? path : undefined;
  } catch {
    return undefined;
  }
}
