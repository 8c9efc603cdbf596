import { labelMessage } from './field-labels';
import { HttpException, HttpStatus } from '@nestjs/common';

/** One invalid input field; messages say what is allowed, never echo the value. */
export interface FieldError {
  field: string;
  messages: string[];
}

/** RFC 9457 problem details, as every JSON error of Keyward is shaped. */
export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  errors?: FieldError[];
  [extension: string]: unknown;
}

/** Stable problem type URIs: clients branch on these, not on titles. */
export const problemType = (slug: string): string => `urn:keyward:problem:${slug}`;

const DEFAULT_SLUGS: Record<number, [string, string]> = {
  400: ['bad-request', 'Bad request'],
  401: ['unauthenticated', 'Authentication required'],
  403: ['forbidden', 'Not allowed'],
  404: ['not-found', 'Not found'],
  405: ['method-not-allowed', 'Method not allowed'],
  409: ['conflict', 'Conflict'],
  413: ['payload-too-large', 'Request body too large'],
  415: ['unsupported-media-type', 'Unsupported media type'],
  422: ['unprocessable', 'Request cannot be processed'],
  429: ['rate-limited', 'Too many requests'],
  500: ['internal-error', 'Internal error'],
  502: ['bad-gateway', 'Bad gateway'],
  503: ['unavailable', 'Service unavailable'],
  504: ['gateway-timeout', 'Gateway timeout'],
};

export function defaultProblem(status: number): { type: string; title: string } {
  const [slug, title] = DEFAULT_SLUGS[status] ?? (status >= 500 ? DEFAULT_SLUGS[500] : DEFAULT_SLUGS[400]);
  return { type: problemType(slug), title };
}

/**
 * An HttpException that carries a complete problem document. Services throw it (or one of the
 * helpers below) and the global filter writes it as `application/problem+json` for the API or
 * as an error page / inline message for the console.
 */
export class ProblemException extends HttpException {
  readonly problem: ProblemDetails;

  constructor(status: number, slug: string, title: string, detail?: string, extensions: Record<string, unknown> = {}) {
    const problem: ProblemDetails = { type: problemType(slug), title, status, ...extensions };
    if (detail) problem.detail = detail;
    super(problem, status);
    this.problem = problem;
  }
}

export class ValidationProblem extends ProblemException {
  constructor(errors: FieldError[], detail = 'Some fields are invalid; see errors.') {
    super(HttpStatus.BAD_REQUEST, 'validation-failed', 'Invalid request', detail, { errors });
  }

  get errors(): FieldError[] {
    return this.problem.errors ?? [];
  }

  /**
   * The messages for one field, for inline display in a console form: worded with the field's
   * label (`Expires must be …`), not its API name (`expiresAt must be …`).
   */
  static byField(errors: FieldError[]): Record<string, string> {
    return Object.fromEntries(errors.map((e) => [e.field, e.messages.map((m) => labelMessage(e.field, m)).join(' ')]));
  }
}

export const notFound = (what: string, id?: string) =>
  new ProblemException(
    404,
    'not-found',
    `${what} not found`,
    id ? `No ${what.toLowerCase()} with id ${id}.` : undefined,
  );

export const conflict = (slug: string, title: string, detail?: string) =>
  new ProblemException(409, slug, title, detail);
