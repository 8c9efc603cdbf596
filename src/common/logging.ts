import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { Params } from 'nestjs-pino';
import type { DestinationStream } from 'pino';
import type { KeywardConfig } from '../config/config';

/** Any field named like a secret has its value replaced, at any depth of a log object. */
export const SECRET_NAME = /key$|secret|token|pass(word|wd|phrase)?$|authorization|cookie|credential/i;
const REDACTED = '[redacted]';

export function redactSecrets(value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== 'object' || depth > 8) return value;
  if (value instanceof Error) return value;
  if (Array.isArray(value)) return value.map((v) => redactSecrets(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    out[k] = SECRET_NAME.test(k) && v !== null && v !== undefined ? REDACTED : redactSecrets(v, depth + 1);
  }
  return out;
}

/** The URL with the values of secret-named query parameters (e.g. the setup link's token) hidden. */
export function sanitizeUrl(url: string | undefined): string | undefined {
  if (!url || !url.includes('?')) return url;
  const [path, query] = url.split('?', 2);
  const params = new URLSearchParams(query);
  for (const name of [...params.keys()]) {
    // `code` is an OpenID Connect authorization code on the single sign-on callback.
    if (SECRET_NAME.test(name) || name === 'code') params.set(name, REDACTED);
  }
  return `${path}?${params.toString()}`;
}

const QUIET_PATHS = [/^\/health/, /^\/assets\//, /^\/favicon\.ico$/];

type Req = IncomingMessage & { id?: unknown; authUser?: { email: string }; originalUrl?: string };

export function loggerParams(config: KeywardConfig, stream?: DestinationStream): Params {
  return {
    pinoHttp: [
      {
        level: config.logLevel,
        // Headers are not logged at all (they carry bearer tokens, cookies and provider keys);
        // bodies neither. What is logged goes through redactSecrets as a second line of defence.
        serializers: {
          req: (req: Req) => ({
            id: req.id,
            method: req.method,
            url: sanitizeUrl(req.originalUrl ?? req.url),
            remoteAddress: req.socket?.remoteAddress,
          }),
          // pino-http hands serializers a wrapper whose own statusCode can be null; `raw` is the response.
          res: (res: ServerResponse & { raw?: ServerResponse }) => ({ statusCode: (res.raw ?? res).statusCode }),
        },
        formatters: { log: (object: Record<string, unknown>) => redactSecrets(object) as Record<string, unknown> },
        genReqId: (req: IncomingMessage, res: ServerResponse) => {
          const incoming = req.headers['x-request-id'];
          const id = typeof incoming === 'string' && /^[\w.-]{1,64}$/.test(incoming) ? incoming : randomUUID();
          res.setHeader('X-Request-Id', id);
          return id;
        },
        customProps: (req: Req) => (req.authUser ? { user: req.authUser.email } : {}),
        autoLogging: { ignore: (req: Req) => QUIET_PATHS.some((p) => p.test(req.url ?? '')) },
        quietReqLogger: true,
      },
      stream ?? process.stdout,
    ],
  } as Params;
}
