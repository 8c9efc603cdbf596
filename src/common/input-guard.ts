import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import { isMachineRequest } from './http';
import { ProblemException, problemType } from './problem';

/** Deeper than any request Keyward understands; far below what would exhaust the stack. */
export const MAX_INPUT_DEPTH = 32;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * What is wrong with a parsed body or query, or null: text holding NUL or a lone UTF-16
 * surrogate (neither can be stored in PostgreSQL, and neither is in any real name, email or
 * key), or nesting deeper than MAX_INPUT_DEPTH. Walks iteratively, so a 20,000-deep document
 * costs a loop, not the stack.
 */
export function hostileInput(value: unknown): string | null {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop()!;
    if (typeof item === 'string') {
      if (item.includes('\u0000')) return 'text must not contain NUL characters';
      if (LONE_SURROGATE.test(item)) return 'text must be valid Unicode (it holds a lone surrogate)';
      continue;
    }
    if (item === null || typeof item !== 'object') continue;
    if (depth >= MAX_INPUT_DEPTH) return `nesting must be at most ${MAX_INPUT_DEPTH} levels deep`;
    if (Array.isArray(item)) {
      for (const element of item) stack.push([element, depth + 1]);
      continue;
    }
    for (const [key, element] of Object.entries(item as Record<string, unknown>)) {
      stack.push([key, depth + 1], [element, depth + 1]);
    }
  }
  return null;
}

/**
 * Runs first on every route: a body or query that `hostileInput` refuses is a 400 problem (or
 * the console's error page) before any guard, pipe or service sees it.
 */
@Injectable()
export class InputGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    if (context.getType() !== 'http') return true;
    const req = context.switchToHttp().getRequest<Request>();
    const problem = hostileInput(req.body) ?? hostileInput(req.query) ?? hostileInput(req.params);
    if (problem)
      throw new ProblemException(400, 'invalid-input', 'Invalid input', `The request was refused: ${problem}.`);
    return true;
  }
}

/**
 * Express matches routes case-insensitively, but Keyward tells API from console requests by
 * their exact prefix: `/API/...` would reach an API route as a console request, with the
 * session cookie. Such paths are refused before routing.
 */
export function refuseMiscasedApiPaths(req: Request, res: Response, next: NextFunction): void {
  const lower = req.path.toLowerCase();
  if (lower !== req.path && isMachineRequest({ path: lower } as Request)) {
    res
      .status(404)
      .type('application/problem+json')
      .send(
        JSON.stringify({
          type: problemType('not-found'),
          title: 'Not found',
          status: 404,
          detail: `No route ${req.method} ${req.path}. Paths are case-sensitive.`,
          instance: req.path,
        }),
      );
    return;
  }
  next();
}
