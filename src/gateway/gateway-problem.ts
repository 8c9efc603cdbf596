import type { IncomingMessage, ServerResponse } from 'node:http';
import { problemType } from '../common/problem';

/**
 * An answer Keyward gives itself (not the provider's). `refusal` names why a request was turned
 * away before it reached a provider; such answers are audited (folded) and counted in usage.
 */
export class GatewayProblem extends Error {
  constructor(
    readonly status: number,
    readonly slug: string,
    readonly title: string,
    readonly detail: string,
    readonly headers: Record<string, string> = {},
    readonly refusal?: string,
  ) {
    super(title);
  }
}

export function sendProblem(req: IncomingMessage, res: ServerResponse, problem: GatewayProblem): void {
  if (res.headersSent) return void res.end();
  const body = JSON.stringify({
    type: problemType(problem.slug),
    title: problem.title,
    status: problem.status,
    detail: problem.detail,
    instance: (req.url ?? '').split('?')[0].slice(0, 300),
  });
  res.writeHead(problem.status, {
    ...problem.headers,
    'content-type': 'application/problem+json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
  // An unread request body would stall a keep-alive connection: drain what is left.
  if (!req.complete) req.resume();
}
