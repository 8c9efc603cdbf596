import type { ServerResponse } from 'node:http';
import type { StreamUsageTap, UsageCount } from '../plugin-system/provider-plugin';
import { decodedTap, hasUsageObject, SseDecoder, usageKindOf } from '../plugin-system/provider-plugin';
import type { Call } from './gateway-call';
import { decodeBody, DROPPED_RESPONSE_HEADERS } from './upstream';

const MAX_USAGE_BODY = 8 * 1024 * 1024;

/** Events after which a stream is complete, whatever the socket does next. */
const TERMINAL_EVENTS = new Set([
  'message_stop',
  'response.completed',
  'response.incomplete',
  'response.failed',
  'error',
]);

export interface RelayResult {
  /** The client has the whole answer (or its stream's terminal event). */
  complete: boolean;
  usage?: UsageCount;
  /** Bytes of event data relayed (for counting an abandoned stream that carried no usage). */
  relayedDataBytes: number;
}

export interface ProviderFailure {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** What the relay needs of the upstream call: stop it, and let it go on after a pause. */
export interface UpstreamControl {
  abort(reason: Error): void;
  resume(): void;
}

/** A relay in progress, fed by the upstream call's callbacks. */
export interface Relay {
  /** A chunk of the answer; false when the client cannot take more now (resume comes on drain). */
  data(chunk: Buffer): boolean;
  end(): void;
  error(error: Error): void;
  readonly done: Promise<RelayResult>;
}

/**
 * Passes the provider's answer to the client as it arrives, reading usage on the way: SSE is
 * split into events on bytes (never decoded per network chunk), so the events Keyward added for
 * itself can be dropped byte-exactly and text split between chunks stays intact. Fed by
 * callbacks (undici's dispatch handler), not a stream: no Readable, no promise per chunk.
 */
export function startRelay(
  call: Call,
  statusCode: number,
  responseHeaders: Record<string, string | string[] | undefined>,
  attempt: number,
  upstream: UpstreamControl,
): Relay {
  const { res } = call;
  const contentType = String(responseHeaders['content-type'] ?? '');
  const isSse = contentType.includes('text/event-stream');
  const encoding = String(responseHeaders['content-encoding'] ?? 'identity').toLowerCase();
  const filter = isSse && encoding === 'identity' ? call.dropEvent : undefined;
  const billable = usageKindOf(call.target.endpoint) === 'billable';
  const headers: Record<string, string | string[]> = { 'x-keyward-attempts': String(attempt) };
  for (const name in responseHeaders) {
    const value = responseHeaders[name];
    if (value === undefined || DROPPED_RESPONSE_HEADERS.has(name)) continue;
    if (name === 'content-length' && filter) continue;
    headers[name] = value;
  }
  res.writeHead(statusCode, headers);

  // A compressed stream (asked for identity, sent gzip anyway) passes on as it came; the tap
  // reads it decoded.
  let tap: StreamUsageTap | undefined;
  if (isSse && billable) {
    const plain = call.plugin.createStreamTap(call.target.endpoint);
    tap = encoding === 'identity' ? plain : decodedTap(plain, encoding);
  }
  // The relay splits the events anyway: a tap that takes events is fed from here, not re-decoded.
  const tapEvents = encoding === 'identity' ? tap?.event?.bind(tap) : undefined;
  const tapBytes = tapEvents ? undefined : tap;
  const readsJson = !isSse && billable && contentType.includes('json');
  const collected: Buffer[] = [];
  let collectedBytes = 0;
  let terminal = false;
  let relayedDataBytes = 0;
  let kept: Buffer[] = [];
  const decoder =
    isSse && encoding === 'identity'
      ? new SseDecoder(
          (event, raw) => {
            relayedDataBytes += event.data.length;
            tapEvents?.(event);
            if (event.data === '[DONE]' || (event.event !== undefined && TERMINAL_EVENTS.has(event.event)))
              terminal = true;
            if (filter && !(event.data && hasUsageObject(event.data) && filter(event.data))) kept.push(raw);
          },
          { onOversized: (bytes) => filter && kept.push(bytes) },
        )
      : undefined;

  const usageOf = (): UsageCount | undefined => {
    const { endpoint } = call.target;
    if (tap) return tap.result();
    if (!billable) return undefined;
    let fromAnswer: UsageCount | undefined;
    if (collectedBytes > 0) {
      try {
        const body = collected.length === 1 ? collected[0] : Buffer.concat(collected, collectedBytes);
        fromAnswer = call.plugin.usageFrom(JSON.parse(decodeBody(body, encoding).toString('utf8')), endpoint);
      } catch {
        fromAnswer = undefined;
      }
    }
    // Answers that carry no usage (speech is audio bytes) are counted from the request.
    return fromAnswer ?? call.plugin.usageFromRequest?.(call.json, endpoint);
  };

  let resolveDone!: (result: RelayResult) => void;
  const done = new Promise<RelayResult>((resolve) => (resolveDone = resolve));
  let settled = false;
  const finish = (complete: boolean) => {
    if (settled) return;
    settled = true;
    res.off('close', onClose);
    // Cut short: a last event without its blank line still reaches the tap, as its own decoder would.
    if (!complete && tapEvents) decoder?.end();
    const result = () => ({ complete: complete || terminal, usage: usageOf(), relayedDataBytes });
    // Most taps end at once; a compressed stream's tap finishes decoding first.
    const ended = tap?.end?.() as Promise<void> | undefined;
    if (ended) void ended.catch(() => undefined).then(() => resolveDone(result()));
    else resolveDone(result());
  };
  // The client left: a stream that already delivered its terminal event is complete.
  const onClose = () => {
    if (!res.writableFinished) {
      upstream.abort(new Error('the client closed the connection'));
      finish(false);
    }
  };
  res.on('close', onClose);
  const onDrain = () => upstream.resume();

  return {
    done,
    data(chunk) {
      if (settled) return true;
      if (tapBytes) tapBytes.push(chunk);
      if (decoder) decoder.push(chunk);
      else if (readsJson && collectedBytes + chunk.length <= MAX_USAGE_BODY) {
        collected.push(chunk);
        collectedBytes += chunk.length;
      }
      let out: Buffer = chunk;
      if (filter) {
        if (kept.length === 0) return true;
        out = kept.length === 1 ? kept[0] : Buffer.concat(kept);
        kept = [];
      }
      if (res.write(out)) return true;
      res.once('drain', onDrain);
      return false;
    },
    end() {
      if (settled) return;
      decoder?.end();
      if (filter && kept.length > 0) res.write(Buffer.concat(kept));
      res.end();
      finish(true);
    },
    error(error) {
      if (settled) return;
      if (!res.destroyed) res.destroy(error);
      finish(false);
    },
  };
}

/**
 * A provider's error answer, passed to the client with anything that could be the key masked:
 * providers echo keys, whole or partly starred out ("Incorrect API key provided: sk-abc***wxyz").
 */
export function passThrough(
  res: ServerResponse,
  failure: ProviderFailure,
  attempts: number,
  secret: string | null,
): void {
  if (res.headersSent) return void res.end();
  const body = secret ? Buffer.from(maskKey(failure.body.toString('utf8'), secret)) : failure.body;
  const headers: Record<string, string | string[]> = {
    'x-keyward-attempts': String(attempts),
    'content-length': String(body.length),
  };
  for (const [name, value] of Object.entries(failure.headers)) {
    if (value === undefined || DROPPED_RESPONSE_HEADERS.has(name) || name === 'content-length') continue;
    if (name === 'content-encoding') continue;
    headers[name] = secret
      ? Array.isArray(value)
        ? value.map((v) => maskKey(v, secret))
        : maskKey(value, secret)
      : value;
  }
  res.writeHead(failure.status, headers);
  res.end(body);
}

const KEY_LIKE = /[A-Za-z0-9_*-]{8,}/g;

/** Masks the key itself, any 8+ character piece of it, and starred-out echoes of it. */
export function maskKey(text: string, secret: string): string {
  if (!text) return text;
  return text.replace(KEY_LIKE, (run) => {
    if (run.includes('***')) return '[redacted]';
    return secret.includes(run) || run.includes(secret) ? '[redacted]' : run;
  });
}
