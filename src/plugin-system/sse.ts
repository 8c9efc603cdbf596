/**
 * The one Server-Sent Events decoder of the project (the `text/event-stream` format of the WHATWG
 * HTML standard), used by the gateway's relay and every plugin's stream tap. Dependency-free, so
 * that provider plugins outside this repository can use it.
 *
 * It works on bytes, never on text decoded per network chunk: lines are split at CR and LF bytes
 * (which never occur inside a multi-byte UTF-8 character), and text is decoded once per complete
 * event, so a character cut between two chunks is never broken. A CR at the end of one chunk and a
 * LF at the start of the next are one line ending.
 *
 * Every byte pushed belongs to exactly one `raw` slice handed out, in order, so a relay can
 * forward or drop each block byte-exactly:
 * - every block ended by a blank line is handed out, also blocks that carry no `data` (comments
 *   such as OpenRouter's `: OPENROUTER PROCESSING`, lone blank lines): they come with `data: ''`;
 * - when a CR that ended a block is the last byte of a chunk and the next chunk starts with the LF
 *   of that CRLF, the event has already been handed out (no waiting for the next chunk), and the
 *   LF comes as a block of its own (`raw` = one LF byte, `data: ''`);
 * - a block longer than `maxEventBytes` is not assembled: its bytes go to `onOversized` as they
 *   arrive (so a relay can still pass them on) and the event is not handed to `onEvent`.
 */

export interface SseEvent {
  /** The `event:` field; undefined for unnamed events (OpenAI-style streams). */
  event?: string;
  /** The `data:` lines joined with `\n`; empty for a block without data (a comment, a blank line). */
  data: string;
  id?: string;
  /** The `retry:` field (milliseconds) when it was a valid integer. */
  retry?: number;
}

export interface SseDecoderOptions {
  /**
   * Largest block (event) held in memory, in bytes, terminating blank line included. Default
   * 16 MiB: Responses streams carry partial images as base64 in one event.
   */
  maxEventBytes?: number;
  /**
   * Bytes of a block over `maxEventBytes`, handed out as they arrive instead of being assembled;
   * the block never reaches `onEvent`. Without it those bytes are dropped.
   */
  onOversized?: (bytes: Buffer) => void;
}

export const DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024;

const LF = 0x0a;
const CR = 0x0d;
const COLON = 0x3a;
const SPACE = 0x20;
const LONE_LF = Buffer.from([LF]);
const EMPTY = Buffer.alloc(0);
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);
const DATA = Buffer.from('data');
const EVENT = Buffer.from('event');
const ID = Buffer.from('id');
const RETRY = Buffer.from('retry');

function isField(bytes: Buffer, start: number, name: Buffer): boolean {
  for (let i = 0; i < name.length; i++) if (bytes[start + i] !== name[i]) return false;
  return true;
}

export class SseDecoder {
  private readonly maxEventBytes: number;
  private readonly onOversized: ((bytes: Buffer) => void) | undefined;
  /** Raw bytes of the current block received in earlier chunks. */
  private blockParts: Buffer[] = [];
  private blockBytes = 0;
  /** Bytes of the current, unfinished line received in earlier chunks (no line ending). */
  private lineParts: Buffer[] = [];
  private lineBytes = 0;
  /** A chunk ended with CR: a LF at the start of the next one belongs to that line ending. */
  private pendingCarriageReturn = false;
  /** The CR that ended the last chunk also ended a block. */
  private pendingCarriageReturnEndedBlock = false;
  /** Set while the rest of an over-long block is passed to onOversized unparsed. */
  private oversized = false;
  private firstLine = true;
  private dataLines: Buffer[] = [];
  private eventName: string | undefined;
  private eventId: string | undefined;
  private retry: number | undefined;
  /** Blocks that went over maxEventBytes and were not handed to onEvent. */
  oversizedEvents = 0;

  constructor(
    private readonly onEvent: (event: SseEvent, raw: Buffer) => void,
    options: SseDecoderOptions = {},
  ) {
    this.maxEventBytes = options.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES;
    this.onOversized = options.onOversized;
  }

  /** raw = the event's exact bytes including its terminating blank line, so a relay can forward or drop it byte-exactly */
  push(chunk: Buffer): void {
    let index = 0;
    if (this.pendingCarriageReturn) {
      const endedBlock = this.pendingCarriageReturnEndedBlock;
      this.pendingCarriageReturn = false;
      this.pendingCarriageReturnEndedBlock = false;
      if (chunk.length > 0 && chunk[0] === LF) {
        index = 1;
        if (endedBlock) {
          this.onEvent({ data: '' }, LONE_LF);
          chunk = chunk.subarray(1);
          index = 0;
        }
      }
    }
    // `start` is where the bytes of the current block begin within this chunk.
    let start = 0;
    let lineStart = index;
    let nextLf = chunk.indexOf(LF, index);
    let nextCr = chunk.indexOf(CR, index);
    while (nextLf !== -1 || nextCr !== -1) {
      const end = nextCr === -1 || (nextLf !== -1 && nextLf < nextCr) ? nextLf : nextCr;
      let after = end + 1;
      if (chunk[end] === CR) {
        if (after < chunk.length) {
          if (chunk[after] === LF) after += 1;
        } else {
          this.pendingCarriageReturn = true;
        }
      }
      const blank = this.lineBytes === 0 && end === lineStart;
      if (this.oversized) {
        this.passOversized(chunk.subarray(start, after));
        start = after;
        if (blank) this.endOversized();
      } else if (this.blockBytes + (after - start) > this.maxEventBytes) {
        this.startOversized(chunk.subarray(start, after));
        start = after;
        if (blank) this.endOversized();
      } else if (blank) {
        this.dispatch(chunk.subarray(start, after));
        start = after;
        if (this.pendingCarriageReturn) this.pendingCarriageReturnEndedBlock = true;
      } else {
        this.line(chunk, lineStart, end);
      }
      this.lineParts = [];
      this.lineBytes = 0;
      lineStart = after;
      if (nextLf !== -1 && nextLf < after) nextLf = chunk.indexOf(LF, after);
      if (nextCr !== -1 && nextCr < after) nextCr = chunk.indexOf(CR, after);
    }
    const rest = chunk.subarray(start);
    if (rest.length === 0) return;
    const unfinishedLine = chunk.subarray(lineStart);
    if (this.oversized) {
      this.passOversized(rest);
    } else if (this.blockBytes + rest.length > this.maxEventBytes) {
      this.startOversized(rest);
    } else {
      this.blockParts.push(rest);
      this.blockBytes += rest.length;
      if (unfinishedLine.length > 0) this.lineParts.push(unfinishedLine);
    }
    // Counted even while skipping: a line is blank only if no byte of it came in any chunk.
    this.lineBytes += unfinishedLine.length;
  }

  /** flush a final event without a trailing blank line */
  end(): void {
    this.pendingCarriageReturn = false;
    this.pendingCarriageReturnEndedBlock = false;
    if (this.oversized) {
      this.oversized = false;
      this.resetFields();
      return;
    }
    if (this.lineBytes > 0) {
      this.line(EMPTY, 0, 0);
      this.lineParts = [];
      this.lineBytes = 0;
    }
    if (this.blockBytes > 0) this.dispatch(Buffer.alloc(0));
  }

  /** One complete line: `bytes[start, end)` after any parts of it from earlier chunks. */
  private line(bytes: Buffer, start: number, end: number): void {
    if (this.lineParts.length > 0) {
      bytes = Buffer.concat([...this.lineParts, bytes.subarray(start, end)]);
      start = 0;
      end = bytes.length;
    }
    if (this.firstLine) {
      this.firstLine = false;
      if (end - start >= 3 && bytes[start] === BOM[0] && bytes[start + 1] === BOM[1] && bytes[start + 2] === BOM[2]) {
        start += 3;
      }
    }
    if (start === end || bytes[start] === COLON) return; // a comment, e.g. a keep-alive
    // Field names are compared as bytes: this runs once per line of every stream.
    let colon = bytes.indexOf(COLON, start);
    if (colon === -1 || colon >= end) colon = end;
    let valueStart = colon + 1;
    if (valueStart < end && bytes[valueStart] === SPACE) valueStart += 1;
    if (valueStart > end) valueStart = end;
    const length = colon - start;
    if (length === 4 && isField(bytes, start, DATA)) {
      this.dataLines.push(bytes.subarray(valueStart, end));
    } else if (length === 5 && isField(bytes, start, EVENT)) {
      this.eventName = bytes.toString('utf8', valueStart, end);
    } else if (length === 2 && isField(bytes, start, ID)) {
      const value = bytes.subarray(valueStart, end);
      if (!value.includes(0)) this.eventId = value.toString('utf8');
    } else if (length === 5 && isField(bytes, start, RETRY)) {
      const text = bytes.toString('latin1', valueStart, end);
      if (/^\d+$/.test(text)) this.retry = Number(text);
    }
    // Unknown fields are ignored, as the standard says.
  }

  /** Hands out the current block; `tail` is its last bytes, from this chunk. */
  private dispatch(tail: Buffer): void {
    const raw =
      this.blockParts.length === 0 ? tail : Buffer.concat([...this.blockParts, tail], this.blockBytes + tail.length);
    const event: SseEvent = { data: this.dataText() };
    if (this.eventName !== undefined) event.event = this.eventName;
    if (this.eventId !== undefined) event.id = this.eventId;
    if (this.retry !== undefined) event.retry = this.retry;
    this.blockParts = [];
    this.blockBytes = 0;
    this.resetFields();
    this.onEvent(event, raw);
  }

  private dataText(): string {
    const lines = this.dataLines;
    if (lines.length === 0) return '';
    if (lines.length === 1) return lines[0].toString('utf8');
    const parts: Buffer[] = [];
    for (let i = 0; i < lines.length; i++) {
      if (i > 0) parts.push(LONE_LF);
      parts.push(lines[i]);
    }
    return Buffer.concat(parts).toString('utf8');
  }

  private startOversized(tail: Buffer): void {
    this.oversized = true;
    this.oversizedEvents += 1;
    const held = this.blockParts;
    this.blockParts = [];
    this.blockBytes = 0;
    this.lineParts = [];
    for (const part of held) this.passOversized(part);
    this.passOversized(tail);
  }

  private endOversized(): void {
    this.oversized = false;
    this.resetFields();
    if (this.pendingCarriageReturn) this.pendingCarriageReturnEndedBlock = true;
  }

  private passOversized(bytes: Buffer): void {
    if (bytes.length > 0) this.onOversized?.(bytes);
  }

  private resetFields(): void {
    this.dataLines = [];
    this.eventName = undefined;
    this.eventId = undefined;
    this.retry = undefined;
  }
}
