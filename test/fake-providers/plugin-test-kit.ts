/**
 * Helpers for testing a provider plugin against its fake over real HTTP: send a request the way
 * the gateway would (through the plugin's authorize) and replay a streamed answer in pieces.
 */
import type { ProviderPlugin, StreamUsageTap } from '../../src/plugin-system/provider-plugin';
import { SseDecoder, type SseEvent } from '../../src/plugin-system/sse';

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

/** Deterministic, so a failing split can be reproduced from the seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
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
