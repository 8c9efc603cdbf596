import {
  compareRows,
  emptyMetrics,
  kindOf,
  previousPeriod,
  relativeChange,
  reportCsv,
  topByCost,
  type ReportData,
} from './report-data';

const d = (s: string) => new Date(`${s}T00:00:00Z`);

describe('report periods', () => {
  it('names a window by what it covers', () => {
    expect(kindOf({ start: d('2026-03-05'), end: d('2026-03-06') })).toBe('daily');
    expect(kindOf({ start: d('2026-02-01'), end: d('2026-03-01') })).toBe('monthly');
    expect(kindOf({ start: d('2026-02-01'), end: d('2026-02-28') })).toBe('custom');
    expect(kindOf({ start: d('2026-02-02'), end: d('2026-03-02') })).toBe('custom');
  });

  it('compares with the day or month before, or as long just before', () => {
    expect(previousPeriod({ start: d('2026-03-01'), end: d('2026-03-02') })).toEqual({
      start: d('2026-02-28'),
      end: d('2026-03-01'),
    });
    // March is compared with all of February, not with 31 days before.
    expect(previousPeriod({ start: d('2026-03-01'), end: d('2026-04-01') })).toEqual({
      start: d('2026-02-01'),
      end: d('2026-03-01'),
    });
    expect(previousPeriod({ start: d('2026-01-01'), end: d('2026-02-01') }).start).toEqual(d('2025-12-01'));
    expect(previousPeriod({ start: d('2026-03-10'), end: d('2026-03-20') })).toEqual({
      start: d('2026-02-28'),
      end: d('2026-03-10'),
    });
  });
});

describe('changes and top spenders', () => {
  it('gives the relative change, or null when there was nothing before', () => {
    expect(relativeChange(15, 10)).toBe(0.5);
    expect(relativeChange(5, 10)).toBe(-0.5);
    expect(relativeChange(5, 0)).toBeNull();
  });

  it('matches rows with the previous period by id', () => {
    const now = [{ ...emptyMetrics(), id: 'a', label: 'A', provider: 'openai', requests: 4, cost: 2 }];
    const before = [{ ...emptyMetrics(), id: 'a', requests: 2, cost: 4 }];
    const [row] = compareRows(now, before);
    expect(row.previous).toEqual({ requests: 2, cost: 4 });
    expect(row.change).toEqual({ requests: 1, cost: -0.5 });
    expect(compareRows(now, [])[0]).toMatchObject({ previous: null, change: { requests: null, cost: null } });
  });

  it('ranks spenders by cost and leaves out the ones that cost nothing', () => {
    const rows = compareRows(
      [
        { ...emptyMetrics(), id: 'a', label: 'A', provider: null, cost: 1, requests: 1 },
        { ...emptyMetrics(), id: 'b', label: 'B', provider: null, cost: 3, requests: 1 },
        { ...emptyMetrics(), id: 'none:openai', label: 'refused', provider: null, cost: 0, requests: 9 },
      ],
      [],
    );
    expect(topByCost(rows).map((r) => r.id)).toEqual(['b', 'a']);
  });
});

describe('report CSV', () => {
  it('quotes names, keeps 8 decimals of cost and writes one line per group', () => {
    const row = (id: string, label: string, cost: number) =>
      compareRows([{ ...emptyMetrics(), id, label, provider: 'openai', requests: 2, errors: 1, cost }], [])[0];
    const data: ReportData = {
      period: { start: d('2026-03-01'), end: d('2026-04-01') },
      previousPeriod: { start: d('2026-02-01'), end: d('2026-03-01') },
      totals: { ...emptyMetrics(), requests: 2, errors: 1, cost: 0.12345678, errorRate: 0.5 },
      previousTotals: { ...emptyMetrics(), errorRate: 0 },
      change: { requests: null, cost: null, tokens: null, errorRate: null },
      byProvider: [row('openai', 'openai', 0.12345678)],
      byKey: [row('k1', 'Prod, "main"', 0.12345678)],
      byModel: [],
      byToken: [],
      errors: [{ errorType: 'no_key', keyless: true, requests: 1 }],
      daily: [],
      topSpenders: { keys: [], tokens: [], models: [] },
    };
    const lines = reportCsv(data).trim().split('\n');
    expect(lines[0].startsWith('section,id,name,provider,requests,')).toBe(true);
    expect(lines[1]).toMatch(/^total,,2026-03-01\.\.2026-03-31,,2,0,0,0,1,0\.5000,0\.12345678,/);
    expect(lines[3]).toMatch(/^key,k1,"Prod, ""main""",openai,2,/);
    expect(lines[4]).toMatch(/^error_type,no_key,refused by Keyward,,1,0,0,0,1,1\.0000,0,0,0,1,0/);
  });
});
