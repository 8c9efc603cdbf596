/**
 * Helpers for testing a provider plugin against a fake over real HTTP: send a request the way the
 * gateway would (through the plugin's authorize, matched against its route table), read the
 * usage the way the gateway would (usageFrom or a stream tap fed in random pieces, decoded when
 * compressed), and compare it with what the fake reported.
 */
import {
  checkPath,
  decodeContent,
  decodedTap,
  EndpointTable,
  routesFromPaths,
  SseDecoder,
  type ProviderEndpoint,
  type ProviderPlugin,
  type SseEvent,
  type StreamUsageTap,
  type UsageCount,
} from '../../src/plugin-system/provider-plugin';
import { request as httpRequest } from 'node:http';
import { seededRandom } from './fake-provider';

export { seededRandom };

export interface RawAnswer {
  status: number;
  headers: Headers;
  /** The exact bytes of the body, for feeding stream taps. */
  bytes: Buffer;
  /** The body parsed as JSON, undefined when it is not JSON (e.g. a stream). */
  json: unknown;
}

export async function callThroughPlugin(
  plugin: ProviderPlugin,
  secret: string,
  path: string,
  body?: Record<string, unknown>,
  organizationId?: string,
): Promise<RawAnswer> {
  const base = plugin.config.baseUrl.replace(/\/+$/, '');
  const request = plugin.authorize(
    { method: body ? 'POST' : 'GET', url: new URL(`${base}${path}`), headers: {} },
    secret,
    organizationId,
  );
  if (body) {
    request.headers['content-type'] = 'application/json';
  }
  const response = await fetch(request.url, {
    method: request.method,
    headers: request.headers,
    body: body ? JSON.stringify(body) : undefined,
  });
  const bytes = Buffer.from(await response.arrayBuffer());
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8')) as unknown;
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, bytes, json };
}

/** Cuts bytes into pieces of 1..maxSize bytes, splitting lines, events and UTF-8 characters. */
export function randomChunks(bytes: Buffer, seed: number, maxSize = 9): Buffer[] {
  const random = seededRandom(seed);
  const chunks: Buffer[] = [];
  for (let offset = 0; offset < bytes.length;) {
    const size = 1 + Math.floor(random() * maxSize);
    chunks.push(bytes.subarray(offset, offset + size));
    offset += size;
  }
  return chunks;
}

export function feedTap(tap: StreamUsageTap, bytes: Buffer, seed: number): StreamUsageTap {
  for (const chunk of randomChunks(bytes, seed)) {
    tap.push(chunk);
  }
  void tap.end?.();
  return tap;
}

/** The events of a stream that carry data (comments and keep-alives left out). */
export function sseEvents(bytes: Buffer): SseEvent[] {
  const events: SseEvent[] = [];
  const decoder = new SseDecoder((event) => {
    if (event.data !== '') events.push(event);
  });
  decoder.push(bytes);
  decoder.end();
  return events;
}

export interface PluginCall {
  method?: 'GET' | 'POST' | 'DELETE';
  /** Relative to the plugin's base URL, query included, e.g. `/files/file-1/content`. */
  path: string;
  json?: unknown;
  /** A multipart body (file uploads, audio); fetch sets the boundary. */
  form?: FormData;
  headers?: Record<string, string>;
}

/**
 * Any request through the plugin's authorize, as the gateway sends it: `accept-encoding:
 * identity`, the method defaulting to POST with a body and GET without.
 */
export async function sendThroughPlugin(plugin: ProviderPlugin, secret: string, call: PluginCall): Promise<RawAnswer> {
  const base = plugin.config.baseUrl.replace(/\/+$/, '');
  const method = call.method ?? (call.json !== undefined || call.form ? 'POST' : 'GET');
  const request = plugin.authorize(
    { method, url: new URL(`${base}${call.path}`), headers: { 'accept-encoding': 'identity', ...call.headers } },
    secret,
  );
  let body: Buffer | undefined;
  if (call.form) {
    // Let fetch's Request encode the form, boundary and all.
    const encoded = new Request('http://form.invalid/', { method: 'POST', body: call.form });
    request.headers['content-type'] = encoded.headers.get('content-type') ?? 'multipart/form-data';
    body = Buffer.from(await encoded.arrayBuffer());
  } else if (call.json !== undefined) {
    request.headers['content-type'] = 'application/json';
    body = Buffer.from(JSON.stringify(call.json));
  }
  // node:http, not fetch: fetch would decode a compressed body, the gateway sees it as sent.
  const { status, headers, bytes } = await new Promise<{ status: number; headers: Headers; bytes: Buffer }>(
    (resolve, reject) => {
      const outgoing = httpRequest(request.url, { method, headers: request.headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const answerHeaders = new Headers();
          for (const [name, value] of Object.entries(res.headers)) {
            if (value !== undefined) answerHeaders.set(name, Array.isArray(value) ? value.join(', ') : value);
          }
          resolve({ status: res.statusCode ?? 0, headers: answerHeaders, bytes: Buffer.concat(chunks) });
        });
        res.on('error', reject);
      });
      outgoing.on('error', reject);
      outgoing.end(body);
    },
  );
  const decoded = decodeContent(bytes, headers.get('content-encoding') ?? undefined) ?? bytes;
  let json: unknown;
  try {
    json = JSON.parse(decoded.toString('utf8')) as unknown;
  } catch {
    json = undefined;
  }
  return { status, headers, bytes, json };
}

/** The route of the plugin's table that the gateway would match, or undefined. */
export function matchEndpoint(plugin: ProviderPlugin, method: string, path: string): ProviderEndpoint | undefined {
  const checked = checkPath(path.split('?')[0]);
  if (!checked.ok) return undefined;
  const table = new EndpointTable(plugin.config.routes ?? routesFromPaths(plugin.config.endpoints));
  const match = table.match(method, checked.segments);
  return match.kind === 'match' ? match.endpoint : undefined;
}

/**
 * The usage the gateway would record for an answer: from a stream tap fed in seeded random
 * pieces (through decodedTap when the answer is compressed) for SSE, from usageFrom for JSON,
 * from usageFromRequest for answers that carry none (speech).
 */
export async function usageOfAnswer(
  plugin: ProviderPlugin,
  answer: RawAnswer,
  endpoint: ProviderEndpoint | undefined,
  options: { seed?: number; requestBody?: unknown } = {},
): Promise<UsageCount | undefined> {
  const contentType = answer.headers.get('content-type') ?? '';
  let usage: UsageCount | undefined;
  if (contentType.startsWith('text/event-stream')) {
    const tap = decodedTap(plugin.createStreamTap(endpoint), answer.headers.get('content-encoding') ?? undefined);
    for (const chunk of randomChunks(answer.bytes, options.seed ?? 1)) tap.push(chunk);
    await tap.end?.();
    usage = tap.result();
  } else if (answer.json !== undefined) {
    usage = plugin.usageFrom(answer.json, endpoint);
  }
  return usage ?? plugin.usageFromRequest?.(options.requestBody, endpoint);
}
