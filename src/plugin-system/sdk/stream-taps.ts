/** Stream taps: counting a streamed answer's usage while the gateway passes its bytes on. */
import * as zlib from 'node:zlib';
import { SseDecoder, type SseEvent } from '../sse';
import type { StreamUsageTap, UsageCount } from './contract';
import { hasUsageObject } from './usage';
import { parseJson } from './values';

/**
 * A StreamUsageTap over an SSE stream: `onEvent` sees every complete event and keeps what it
 * needs in its closure; `result` reports it. Events are split on bytes and decoded whole (see
 * SseDecoder), so chunks may be cut anywhere, inside a line or a UTF-8 character. Blocks without
 * data (comments, keep-alives) never reach `onEvent`.
 */
export function sseUsageTap(
  onEvent: (event: SseEvent) => void,
  result: () => UsageCount | undefined,
  options: { maxEventBytes?: number } = {},
): StreamUsageTap {
  const decoder = new SseDecoder((event) => {
    if (event.data.length > 0) onEvent(event);
  }, options);
  return {
    push: (chunk) => decoder.push(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk),
    event: (event) => {
      if (event.data.length > 0) onEvent(event);
    },
    end: () => decoder.end(),
    result,
  };
}

/**
 * The tap for providers that report a stream's usage whole in one event (OpenAI-compatible
 * APIs): events without a `"usage"` key — the bulk of a stream — are never parsed, and the last
 * usage found wins.
 */
export function usageEventTap(usageOf: (json: unknown) => UsageCount | undefined): StreamUsageTap {
  let usage: UsageCount | undefined;
  return sseUsageTap(
    (event) => {
      if (hasUsageObject(event.data)) usage = usageOf(parseJson(event.data)) ?? usage;
    },
    () => usage,
  );
}

/** A tap that ignores the bytes and reports `usage` (a `read` route: zero tokens). */
export function fixedUsageTap(usage: UsageCount): StreamUsageTap {
  return { push: () => undefined, end: () => undefined, result: () => ({ ...usage }) };
}

// ---- compression --------------------------------------------------------------------------------

/** `gzip`, `x-gzip`, `deflate`, `br`; `identity` and none are no coding. */
export type ContentCoding = 'gzip' | 'deflate' | 'br';

/**
 * The codings of a `content-encoding` header in the order they were applied; undefined when one
 * is unknown (then the body cannot be read, only passed on).
 */
export function contentCodings(contentEncoding: string | undefined): ContentCoding[] | undefined {
  const codings: ContentCoding[] = [];
  for (const raw of (contentEncoding ?? '').split(',')) {
    const coding = raw.trim().toLowerCase();
    if (coding === '' || coding === 'identity') continue;
    if (coding === 'gzip' || coding === 'x-gzip') codings.push('gzip');
    else if (coding === 'deflate') codings.push('deflate');
    else if (coding === 'br') codings.push('br');
    else return undefined;
  }
  return codings;
}

function decompressor(coding: ContentCoding): zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress {
  // Streams cut off mid-way (a client that left) must not throw at the tap's end.
  const flush = { finishFlush: zlib.constants.Z_SYNC_FLUSH };
  if (coding === 'gzip') return zlib.createGunzip(flush);
  if (coding === 'deflate') return zlib.createInflate(flush);
  return zlib.createBrotliDecompress({ finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH });
}

/**
 * Wraps `tap` for an answer sent with `contentEncoding` although Keyward asked for `identity`:
 * the relay goes on passing the original (compressed) bytes to the client, and the tap sees the
 * decoded ones. Decoding runs on Node's zlib streams, so it finishes asynchronously: await
 * `end()` before the final `result()`. An unknown coding leaves the tap unfed (no usage read).
 * Without a coding the tap itself is returned.
 */
export function decodedTap(tap: StreamUsageTap, contentEncoding: string | undefined): StreamUsageTap {
  const codings = contentCodings(contentEncoding);
  if (codings === undefined) {
    return { push: () => undefined, end: () => undefined, result: () => tap.result() };
  }
  if (codings.length === 0) return tap;
  // Undo the last-applied coding first.
  const stages = codings.reverse().map(decompressor);
  for (let i = 0; i < stages.length - 1; i++) stages[i].pipe(stages[i + 1]);
  const last = stages[stages.length - 1];
  let broken = false;
  for (const stage of stages) stage.on('error', () => (broken = true));
  last.on('data', (chunk: Buffer) => tap.push(chunk));
  const finished = new Promise<void>((resolve) => {
    last.once('end', resolve);
    last.once('close', resolve);
    for (const stage of stages) stage.once('error', () => resolve());
  });
  return {
    push(chunk) {
      if (!broken) stages[0].write(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk);
    },
    async end() {
      if (!broken) stages[0].end();
      await finished;
      await tap.end?.();
    },
    result: () => tap.result(),
  };
}

/** A whole (non-streamed) body as sent with `contentEncoding`, decoded; undefined when it cannot be. */
export function decodeContent(bytes: Buffer, contentEncoding: string | undefined): Buffer | undefined {
  const codings = contentCodings(contentEncoding);
  if (codings === undefined) return undefined;
  try {
    let body = bytes;
    for (const coding of codings.reverse()) {
      body =
        coding === 'gzip'
          ? zlib.gunzipSync(body)
          : coding === 'deflate'
            ? zlib.inflateSync(body)
            : zlib.brotliDecompressSync(body);
    }
    return body;
  } catch {
    return undefined;
  }
}
