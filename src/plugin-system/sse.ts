/**
 * An incremental Server-Sent Events reader (the `text/event-stream` format of the WHATWG HTML
 * standard), dependency-free so that provider plugins can use it.
 *
 * It is fed the raw bytes of a response as they arrive and hands out one event at a time. Only
 * the unfinished line and the event being assembled are held, never the whole stream, and a
 * multi-byte character or an event split across two chunks is put back together.
 */

export interface SseEvent {
  /** The `event:` field; undefined for unnamed events (OpenAI-style streams). */
  event?: string;
  /** The `data:` lines joined with `\n`. */
  data: string;
  id?: string;
}

/**
 * Lines longer than this are dropped rather than grown without bound; no provider's usage event
 * comes anywhere near it, and a stream that sends one must not exhaust the gateway's memory.
 */
const DEFAULT_MAX_LINE_LENGTH = 4 * 1024 * 1024;

export interface SseReaderOptions {
  maxLineLength?: number;
}

export class SseReader {
  private readonly decoder = new TextDecoder('utf-8');
  private readonly maxLineLength: number;
  private partialLine = '';
  /** Set while the rest of an over-long line is being skipped. */
  private skippingLine = false;
  /** A chunk ended with `\r`: a `\n` at the start of the next one belongs to the same line end. */
  private pendingCarriageReturn = false;
  private eventName: string | undefined;
  private eventId: string | undefined;
  private dataLines: string[] = [];

  constructor(
    private readonly onEvent: (event: SseEvent) => void,
    options: SseReaderOptions = {},
  ) {
    this.maxLineLength = options.maxLineLength ?? DEFAULT_MAX_LINE_LENGTH;
  }

  push(chunk: Buffer | Uint8Array | string): void {
    let text = typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    if (this.pendingCarriageReturn && text.startsWith('\n')) {
      text = text.slice(1);
    }
    this.pendingCarriageReturn = false;
    let start = 0;
    for (let index = 0; index < text.length; index += 1) {
      const char = text.charCodeAt(index);
      if (char !== 10 && char !== 13) {
        continue;
      }
      this.appendToLine(text.slice(start, index));
      this.endLine();
      if (char === 13) {
        if (index + 1 === text.length) {
          this.pendingCarriageReturn = true;
        } else if (text.charCodeAt(index + 1) === 10) {
          index += 1;
        }
      }
      start = index + 1;
    }
    this.appendToLine(text.slice(start));
  }

  /** Dispatches an event left unterminated when the stream ended. */
  end(): void {
    const rest = this.decoder.decode();
    if (rest.length > 0) {
      this.appendToLine(rest);
    }
    if (this.partialLine.length > 0) {
      this.endLine();
    }
    this.dispatch();
  }

  private appendToLine(text: string): void {
    if (this.skippingLine || text.length === 0) {
      return;
    }
    if (this.partialLine.length + text.length > this.maxLineLength) {
      this.partialLine = '';
      this.skippingLine = true;
      return;
    }
    this.partialLine += text;
  }

  private endLine(): void {
    const line = this.partialLine;
    const skipped = this.skippingLine;
    this.partialLine = '';
    this.skippingLine = false;
    if (skipped) {
      return;
    }
    if (line.length === 0) {
      this.dispatch();
      return;
    }
    if (line.startsWith(':')) {
      return; // a comment, such as OpenRouter's keep-alive `: OPENROUTER PROCESSING`
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) {
      value = value.slice(1);
    }
    switch (field) {
      case 'data':
        this.dataLines.push(value);
        break;
      case 'event':
        this.eventName = value;
        break;
      case 'id':
        this.eventId = value;
        break;
      default:
        break; // `retry` and unknown fields mean nothing to a usage counter
    }
  }

  private dispatch(): void {
    if (this.dataLines.length > 0) {
      const event: SseEvent = { data: this.dataLines.join('\n') };
      if (this.eventName !== undefined) {
        event.event = this.eventName;
      }
      if (this.eventId !== undefined) {
        event.id = this.eventId;
      }
      this.onEvent(event);
    }
    this.dataLines = [];
    this.eventName = undefined;
  }
}

/**
 * Splits a byte stream into whole events without decoding it first: each event's bytes (with its
 * terminating blank line) are handed out as they arrived, so a relay can forward or drop events
 * byte for byte, and text is decoded only once an event is complete — a character split between
 * two network chunks is never broken. Lines end in LF, CR or CRLF; the LF of a CRLF that closes
 * an event travels at the head of the next event's bytes (every byte is handed out exactly once,
 * in order). An event that outgrows `maxEventBytes` is handed out in pieces with empty data, so
 * memory stays bounded.
 */
export class SseDecoder {
  private readonly maxEventBytes: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private atLineStart = true;
  private previousWasCr = false;

  constructor(
    private readonly onEvent: (event: SseEvent, raw: Buffer) => void,
    options: { maxEventBytes?: number } = {},
  ) {
    this.maxEventBytes = options.maxEventBytes ?? DEFAULT_MAX_LINE_LENGTH;
  }

  push(chunk: Buffer): void {
    let start = 0;
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i];
      if (byte === 10 && this.previousWasCr) {
        this.previousWasCr = false;
        continue;
      }
      if (byte === 10 || byte === 13) {
        this.previousWasCr = byte === 13;
        if (this.atLineStart) {
          this.emit(chunk.subarray(start, i + 1));
          start = i + 1;
        }
        this.atLineStart = true;
      } else {
        this.previousWasCr = false;
        this.atLineStart = false;
      }
    }
    if (start < chunk.length) {
      this.pending.push(chunk.subarray(start));
      this.pendingBytes += chunk.length - start;
      if (this.pendingBytes > this.maxEventBytes) this.emitOversized();
    }
  }

  /** A last event that ended without a blank line. */
  end(): void {
    if (this.pendingBytes > 0) this.emit(Buffer.alloc(0));
  }

  private emit(tail: Buffer): void {
    let raw = tail;
    if (this.pending.length > 0) {
      this.pending.push(tail);
      raw = Buffer.concat(this.pending, this.pendingBytes + tail.length);
      this.pending = [];
      this.pendingBytes = 0;
    }
    if (raw.length === 0) return;
    this.onEvent(raw.length > this.maxEventBytes ? { data: '' } : parseEvent(raw.toString('utf8')), raw);
  }

  private emitOversized(): void {
    const raw = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    this.onEvent({ data: '' }, raw);
  }
}

function parseEvent(text: string): SseEvent {
  const event: SseEvent = { data: '' };
  const data: string[] = [];
  for (const line of text.split(/\r\n|\r|\n/)) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') data.push(value);
    else if (field === 'event') event.event = value;
    else if (field === 'id') event.id = value;
  }
  event.data = data.join('\n');
  return event;
}
