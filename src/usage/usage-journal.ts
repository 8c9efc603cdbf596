import * as fs from 'node:fs';
import * as path from 'node:path';

/** A journal line: the record, its unique id, and whether it exists only here (spilled). */
export interface JournalEntry<R> {
  id: string;
  record: R;
  /** Written only to the journal because the memory buffer was full (a database outage). */
  spilled: boolean;
}

/**
 * How entries become lines and back: JSON of the entry by default. A caller can write a compact
 * line of its own (a JSON array without the field names, about half the bytes and the time);
 * `decode` gets each line parsed and returns undefined for one it does not recognise.
 */
export interface JournalCodec<R> {
  encode(entry: JournalEntry<R>): string;
  decode(parsed: unknown): JournalEntry<R> | undefined;
}

const JSON_CODEC: JournalCodec<never> = {
  encode: (entry) => JSON.stringify(entry),
  decode: (parsed) => parsed as JournalEntry<never>,
};

/** How often appended lines are forced to disk (group commit). */
const SYNC_EVERY_MS = 20;
/** A segment is closed and a new one started after this many lines. */
const SEGMENT_LINES = 5_000;

const SEGMENT = /^(\d{12})\.jsonl$/;
const segmentName = (n: number) => `${String(n).padStart(12, '0')}.jsonl`;

/**
 * The local append-only usage journal (`<data dir>/usage-journal/`): numbered segment files of
 * JSON lines. The lines appended during one turn of the event loop go to the kernel together,
 * in one synchronous write(2) at its end (setImmediate), before any new request is read: a
 * killed process loses at most the records of the answers it was finishing at that instant,
 * answers whose record it could not have written before them anyway. `fdatasync` runs in the
 * background every 20 ms for all lines written since (group commit), which bounds what a power
 * loss can take. A segment is deleted once every record in it is in the database; at start,
 * whatever segments remain are replayed, and the database skips the record ids it already has.
 */
export class UsageJournal<R> {
  private fd = -1;
  private current = 0;
  private linesInCurrent = 0;
  private dirty = false;
  private syncing = false;
  private syncTimer: NodeJS.Timeout | undefined;
  /** Lines appended in this turn of the event loop, written together at its end. */
  private buffered: string[] = [];
  private writeScheduled = false;
  /** Records per segment not yet confirmed written. */
  private readonly outstanding = new Map<number, number>();

  constructor(
    readonly dir: string,
    private readonly onError: (message: string) => void,
    private readonly codec: JournalCodec<R> = JSON_CODEC as JournalCodec<R>,
  ) {}

  /** Opens a fresh segment and returns what the existing ones hold (a previous run's leftovers). */
  open(): { segment: number; entries: JournalEntry<R>[] }[] {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const found: { segment: number; entries: JournalEntry<R>[] }[] = [];
    for (const segment of this.segments()) {
      const entries = this.read(segment);
      if (entries.length === 0) {
        fs.rmSync(path.join(this.dir, segmentName(segment)), { force: true });
        continue;
      }
      this.outstanding.set(segment, entries.length);
      found.push({ segment, entries });
      this.current = Math.max(this.current, segment);
    }
    this.startSegment();
    return found;
  }

  /** Appends one record; returns the segment it went to (for `settled`). */
  append(entry: JournalEntry<R>): number {
    if (this.fd < 0) throw new Error('usage journal is not open');
    if (this.linesInCurrent >= SEGMENT_LINES) this.rotate();
    this.buffered.push(this.codec.encode(entry));
    if (!this.writeScheduled) {
      this.writeScheduled = true;
      setImmediate(() => this.writeBuffered());
    }
    this.linesInCurrent++;
    this.outstanding.set(this.current, (this.outstanding.get(this.current) ?? 0) + 1);
    this.dirty = true;
    this.scheduleSync();
    return this.current;
  }

  /** Starts a new segment, so that the finished one can be deleted once written. */
  rotate(): void {
    if (this.linesInCurrent === 0) return;
    this.writeBuffered();
    const sealed = this.current;
    // Off the event loop: the sealed segment is synced and closed in the background.
    const fd = this.fd;
    this.fd = -1;
    this.dirty = false;
    fs.fdatasync(fd, (error) => {
      if (error) this.onError(`usage journal sync failed: ${error.message}`);
      fs.close(fd, () => undefined);
    });
    this.startSegment();
    this.release(sealed);
  }

  /** `count` records of `segment` are in the database (or were already): forget them. */
  settled(segment: number, count = 1): void {
    const left = (this.outstanding.get(segment) ?? 0) - count;
    this.outstanding.set(segment, Math.max(0, left));
    if (segment !== this.current) this.release(segment);
  }

  /** The records only the journal holds (spilled during an outage), in order, with their segment. */
  spilled(): { segment: number; entry: JournalEntry<R> }[] {
    this.rotate();
    const out: { segment: number; entry: JournalEntry<R> }[] = [];
    for (const segment of this.segments()) {
      if (segment === this.current) continue;
      for (const entry of this.read(segment)) if (entry.spilled) out.push({ segment, entry });
    }
    return out;
  }

  /** Forces everything written so far to disk and closes the file. */
  close(): void {
    this.writeBuffered();
    clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
    if (this.fd >= 0) {
      try {
        fs.fdatasyncSync(this.fd);
      } catch {
        // closing anyway
      }
    }
    this.closeFd();
  }

  /** Hands the lines of this turn to the kernel in one write(2). */
  private writeBuffered(): void {
    this.writeScheduled = false;
    if (this.buffered.length === 0 || this.fd < 0) return;
    const text = this.buffered.join('\n') + '\n';
    this.buffered = [];
    try {
      fs.writeSync(this.fd, text);
    } catch (error) {
      this.onError(`usage journal write failed: ${(error as Error).message}`);
    }
  }

  private startSegment(): void {
    this.current++;
    this.fd = fs.openSync(path.join(this.dir, segmentName(this.current)), 'a', 0o600);
    this.linesInCurrent = 0;
    this.outstanding.set(this.current, 0);
  }

  private closeFd(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    try {
      if (this.dirty) fs.fdatasyncSync(fd);
    } catch (error) {
      this.onError(`usage journal sync failed: ${(error as Error).message}`);
    }
    this.dirty = false;
    fs.closeSync(fd);
  }

  private release(segment: number): void {
    if ((this.outstanding.get(segment) ?? 0) > 0) return;
    this.outstanding.delete(segment);
    fs.rmSync(path.join(this.dir, segmentName(segment)), { force: true });
  }

  private sync(): void {
    this.syncTimer = undefined;
    if (!this.dirty || this.syncing || this.fd < 0) return;
    this.dirty = false;
    this.syncing = true;
    fs.fdatasync(this.fd, (error) => {
      this.syncing = false;
      if (error && error.code !== 'EBADF') this.onError(`usage journal sync failed: ${error.message}`);
      if (this.dirty) this.scheduleSync();
    });
  }

  private scheduleSync(): void {
    if (this.syncTimer) return;
    this.syncTimer = setTimeout(() => this.sync(), SYNC_EVERY_MS);
    // A process that exits has handed every line to the kernel already; the sync guards power loss.
    this.syncTimer.unref();
  }

  private segments(): number[] {
    return fs
      .readdirSync(this.dir)
      .map((name) => SEGMENT.exec(name))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
  }

  /** The complete lines of a segment; a torn last line (a crash mid-write) is ignored. */
  private read(segment: number): JournalEntry<R>[] {
    const text = fs.readFileSync(path.join(this.dir, segmentName(segment)), 'utf8');
    const entries: JournalEntry<R>[] = [];
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        const entry = this.codec.decode(JSON.parse(line));
        if (entry) entries.push(entry);
        else this.onError(`usage journal ${segmentName(segment)}: a line in an unknown format was skipped`);
      } catch {
        // a torn line: its record never reached the kernel whole, so it was never acknowledged
      }
    }
    return entries;
  }
}
