import busboy from 'busboy';
import type { IncomingMessage } from 'node:http';
import type { ProviderEndpoint } from '../plugin-system/provider-plugin';
import { modelSourceOf } from '../plugin-system/provider-plugin';
import { GatewayProblem } from './gateway-problem';

/** A request body as the gateway forwards it. */
export interface RequestBody {
  /** The bytes as received (or to be sent, once `prepare` rewrote the JSON). */
  body: Buffer | undefined;
  /** Passed through without buffering (large uploads); the request can then be sent once only. */
  stream: IncomingMessage | undefined;
  json: Record<string, unknown> | undefined;
  model: string | null;
  /** The client asked for a streamed (SSE) answer. */
  streaming: boolean;
}

export interface BodyLimits {
  /** Bodies up to this size are buffered (JSON always is: it is read for model and limits). */
  bufferBytes: number;
  /** Larger non-JSON bodies (multipart uploads) stream through, up to this size. */
  streamBytes: number;
}

const NO_BODY: RequestBody = { body: undefined, stream: undefined, json: undefined, model: null, streaming: false };

/**
 * Reads what the gateway must know of a request body: its JSON (model, stream flag, limits), or
 * the `model` field of a multipart form. Uploads too large to buffer stream through untouched —
 * unless the model must be read from them (a token limited to models), which fails closed.
 */
export async function readRequestBody(
  req: IncomingMessage,
  endpoint: ProviderEndpoint,
  limits: BodyLimits,
  mustReadModel: boolean,
): Promise<RequestBody> {
  if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'DELETE') return NO_BODY;
  const type = String(req.headers['content-type'] ?? '');
  const isJson = /\bjson\b/i.test(type);
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (!isJson && Number.isFinite(declared) && declared > limits.bufferBytes) {
    if (declared > limits.streamBytes) throw tooLarge(limits.streamBytes);
    if (mustReadModel && modelSourceOf(endpoint) !== 'none') throw tooLargeToCheck(limits.bufferBytes);
    return { ...NO_BODY, stream: req };
  }
  const body = await collect(req, limits.bufferBytes);
  if (body.length === 0) return { ...NO_BODY, body };
  if (isJson) {
    const json = parseJsonObject(body);
    const model = typeof json?.model === 'string' && json.model !== '' ? json.model : null;
    return { body, stream: undefined, json, model, streaming: json?.stream === true };
  }
  const source = modelSourceOf(endpoint);
  const model =
    source === 'multipart' || (source === 'json' && /multipart\/form-data/i.test(type))
      ? await multipartField(body, req.headers, 'model')
      : null;
  return { body, stream: undefined, json: undefined, model, streaming: false };
}

function parseJsonObject(body: Buffer): Record<string, unknown> | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new GatewayProblem(
      400,
      'invalid-json',
      'Invalid JSON',
      'The request body is not valid JSON.',
      {},
      'invalid-json',
    );
  }
  return parsed && typeof parsed === 'object' && !Array.isArray(parsed)
    ? (parsed as Record<string, unknown>)
    : undefined;
}

/** The request body, read with plain events (an async iterator costs more per request). */
function collect(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) over = true;
      else chunks.push(chunk);
    });
    req.on('end', () => {
      if (over) reject(tooLarge(limit));
      else resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    });
    req.on('error', reject);
  });
}

/** One field of a buffered multipart form; undefined when the form has none or is malformed. */
function multipartField(body: Buffer, headers: IncomingMessage['headers'], name: string): Promise<string | null> {
  return new Promise((resolve) => {
    let value: string | null = null;
    let parser: busboy.Busboy;
    try {
      parser = busboy({ headers, limits: { fieldSize: 1024, fields: 100 } });
    } catch {
      return resolve(null);
    }
    parser.on('field', (field, text) => {
      if (field === name && value === null) value = text;
    });
    parser.on('file', (_field, file) => file.resume());
    parser.on('close', () => resolve(value));
    parser.on('error', () => resolve(null));
    parser.end(body);
  });
}

const mb = (bytes: number) => `${Math.round(bytes / (1024 * 1024))} MB`;

function tooLarge(limit: number): GatewayProblem {
  return new GatewayProblem(
    413,
    'payload-too-large',
    'Request body too large',
    `The gateway accepts request bodies up to ${mb(limit)}.`,
    {},
    'payload-too-large',
  );
}

function tooLargeToCheck(limit: number): GatewayProblem {
  return new GatewayProblem(
    413,
    'payload-too-large',
    'Request body too large to check',
    `This access token is limited to certain models, so its uploads are read for their model; that works up to ${mb(limit)}.`,
    {},
    'payload-too-large',
  );
}
