import { appendFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { UsageJournal } from './usage-journal';

describe('UsageJournal', () => {
  let dir: string;
  const errors: string[] = [];
  const open = () => new UsageJournal<{ n: number }>(dir, (m) => errors.push(m));
  const files = () => readdirSync(dir).sort();

  beforeEach(() => {
    dir = path.join(mkdtempSync(path.join(tmpdir(), 'kw-journal-')), 'usage-journal');
    errors.length = 0;
  });
  afterEach(() => rmSync(path.dirname(dir), { recursive: true, force: true }));

  it('gives a previous run its unwritten records back, in order, and ignores a torn last line', async () => {
    const first = open();
    expect(first.open()).toEqual([]);
    for (let n = 1; n <= 3; n++) first.append({ id: `id-${n}`, record: { n }, spilled: false });
    // The turn's lines reach the file together at its end; the process is then "killed" (never closed).
    await new Promise((resolve) => setImmediate(resolve));
    // A crash mid-write leaves half a line.
    appendFileSync(path.join(dir, files()[0]), '{"id":"id-4","rec');
    const second = open();
    const found = second.open();
    expect(found.flatMap((s) => s.entries.map((e) => e.id))).toEqual(['id-1', 'id-2', 'id-3']);
    second.close();
    expect(errors).toEqual([]);
  });

  it('deletes a segment once every record in it is written, and never the one being appended to', () => {
    const journal = open();
    journal.open();
    const segment = journal.append({ id: 'a', record: { n: 1 }, spilled: false });
    journal.append({ id: 'b', record: { n: 2 }, spilled: false });
    journal.settled(segment, 2);
    expect(files()).toHaveLength(1); // still the current segment
    journal.rotate();
    expect(files()).toHaveLength(1); // the sealed one went at once: nothing outstanding in it
    const next = journal.append({ id: 'c', record: { n: 3 }, spilled: false });
    journal.rotate();
    expect(files()).toHaveLength(2); // the sealed one waits for its record
    journal.settled(next);
    expect(files()).toHaveLength(1);
    journal.close();
    expect(open().open()).toEqual([]);
  });

  it('reads back only the records it alone holds (spilled during an outage)', () => {
    const journal = open();
    journal.open();
    journal.append({ id: 'memory', record: { n: 1 }, spilled: false });
    journal.append({ id: 'disk', record: { n: 2 }, spilled: true });
    expect(journal.spilled().map((s) => s.entry.id)).toEqual(['disk']);
    journal.close();
  });
});
