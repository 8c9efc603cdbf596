import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { UsageJournal } from './usage-journal';
import { USAGE_LINES, type UsageRecord } from './usage-recorder';

const record: UsageRecord = {
  timestamp: new Date(Date.UTC(2026, 11, 4, 19, 45, 1, 234)),
  keyId: '0190f3a8-7b2c-7def-8abc-0123456789ab',
  provider: 'openai',
  accessTokenId: null,
  endpoint: '/v1/chat/completions',
  model: 'gpt-5 "quoted" 日本語',
  inputTokens: 12,
  outputTokens: 5,
  cachedInputTokens: 3,
  totalTokens: 17,
  cost: 6.5e-7,
  unpriced: false,
  latencyMs: 41,
  success: false,
  errorType: 'client_aborted',
  status: null,
  attempt: 2,
  stream: true,
  source: 'gateway',
  countedByLimits: true,
};

describe('USAGE_LINES (the usage journal line format)', () => {
  it('reads back exactly the entry it wrote, in fewer bytes than the entry as JSON', () => {
    const entry = { id: 'r-1', spilled: true, record };
    const line = USAGE_LINES.encode(entry);
    expect(USAGE_LINES.decode(JSON.parse(line))).toEqual(entry);
    expect(line.length).toBeLessThan(JSON.stringify(entry).length * 0.7);
  });

  it('still reads the lines an earlier version wrote (one JSON object per entry), and skips unknown ones', () => {
    const old = JSON.parse(JSON.stringify({ id: 'r-0', spilled: false, record }));
    expect(USAGE_LINES.decode(old)).toEqual({ id: 'r-0', spilled: false, record });
    expect(USAGE_LINES.decode([99, 'r-2'])).toBeUndefined();
  });

  it('lets a journal left by an earlier version be replayed beside new lines', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'kw-lines-'));
    const dir = path.join(root, 'usage-journal');
    try {
      mkdirSync(dir);
      writeFileSync(
        path.join(dir, '000000000001.jsonl'),
        `${JSON.stringify({ id: 'old', spilled: false, record })}\n[99,"from-the-future"]\n`,
      );
      const errors: string[] = [];
      const journal = new UsageJournal<UsageRecord>(dir, (m) => errors.push(m), USAGE_LINES);
      const found = journal.open();
      journal.append({ id: 'new', spilled: false, record });
      journal.close();
      expect(found.flatMap((s) => s.entries)).toEqual([{ id: 'old', spilled: false, record }]);
      expect(errors).toEqual([expect.stringContaining('unknown format')]);
      const again = new UsageJournal<UsageRecord>(dir, () => undefined, USAGE_LINES).open();
      expect(again.flatMap((s) => s.entries.map((e) => e.id))).toEqual(['old', 'new']);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
