import { escapeXml, usageChartSvg } from './chart';
import {
  axisTicks,
  barLayout,
  costWindow,
  daysOf,
  fillSeries,
  formatUsd,
  HOUR_MS,
  lastDays,
  lastMonths,
  linePoints,
  niceCeiling,
  niceScale,
  parseBound,
  projectCost,
  rangeWindow,
  reportWindow,
  sumMetrics,
} from './usage-math';

const iso = (d: Date) => d.toISOString();

describe('usage maths', () => {
  const wednesday = new Date('2026-11-25T14:30:00Z');

  describe('costWindow', () => {
    it("is the limit's period: UTC day, ISO week from Monday, calendar month", () => {
      const sut = costWindow;
      expect(sut('daily', wednesday)).toEqual({
        start: new Date('2026-11-25T00:00:00Z'),
        end: new Date('2026-11-26T00:00:00Z'),
      });
      expect(sut('weekly', wednesday)).toEqual({
        start: new Date('2026-11-23T00:00:00Z'),
        end: new Date('2026-11-30T00:00:00Z'),
      });
      expect(sut('monthly', new Date('2026-12-31T23:00:00Z'))).toEqual({
        start: new Date('2026-12-01T00:00:00Z'),
        end: new Date('2027-01-01T00:00:00Z'),
      });
    });

    it('is the calendar month without a limit or with a lifetime one', () => {
      const month = { start: new Date('2026-11-01T00:00:00Z'), end: new Date('2026-12-01T00:00:00Z') };
      expect(costWindow(null, wednesday)).toEqual(month);
      expect(costWindow('never', wednesday)).toEqual(month);
    });
  });

  describe('projectCost', () => {
    const sut = projectCost;
    const november = costWindow('monthly', wednesday);

    it('extrapolates the pace so far to the end of the period', () => {
      // 15 of 30 days elapsed: $30 → $60.
      expect(sut(30, november, new Date('2026-11-16T00:00:00Z'))).toBe(60);
      const day = costWindow('daily', wednesday);
      // 14.5 of 24 hours: $2.90 → $4.80.
      expect(sut(2.9, day, wednesday)).toBeCloseTo(4.8, 8);
    });

    it('extrapolates from at least one hour, so the first minutes do not explode', () => {
      const oneMinuteIn = new Date(november.start.getTime() + 60_000);
      const length = november.end.getTime() - november.start.getTime();
      expect(sut(0.5, november, oneMinuteIn)).toBeCloseTo((0.5 / HOUR_MS) * length, 6);
      expect(sut(0.5, november, oneMinuteIn)).toBe(360);
    });

    it('projects what was spent once the period is over, and nothing from nothing', () => {
      expect(sut(12.34, november, new Date('2027-03-01T00:00:00Z'))).toBe(12.34);
      expect(sut(0, november, wednesday)).toBe(0);
    });

    it('rounds to the 8 decimals costs are stored with', () => {
      const projected = sut(0.1, november, new Date('2026-11-04T07:00:00Z'));
      expect(projected).toBe(Math.round(projected * 1e8) / 1e8);
    });
  });

  describe('series', () => {
    it('lists the last 30 days with today last, and the last 12 months with this one last', () => {
      const days = lastDays(wednesday, 30);
      expect(days.labels).toHaveLength(30);
      expect(days.labels[0]).toBe('2026-10-27');
      expect(days.labels[29]).toBe('2026-11-25');
      expect(iso(days.window.start)).toBe('2026-10-27T00:00:00.000Z');
      expect(iso(days.window.end)).toBe('2026-11-26T00:00:00.000Z');

      const months = lastMonths(new Date('2026-02-10T00:00:00Z'), 12);
      expect(months.labels[0]).toBe('2025-03');
      expect(months.labels[11]).toBe('2026-02');
      expect(iso(months.window.start)).toBe('2025-03-01T00:00:00.000Z');
      expect(iso(months.window.end)).toBe('2026-03-01T00:00:00.000Z');
    });

    it('fills days without usage with zeros, in label order', () => {
      const sut = fillSeries;
      const filled = sut(
        ['2026-11-01', '2026-11-02', '2026-11-03'],
        [{ period: '2026-11-02', requests: 3, tokens: 30, inputTokens: 20, outputTokens: 10, cost: 0.5, errors: 1 }],
      );
      expect(filled.map((d) => [d.period, d.requests, d.cost])).toEqual([
        ['2026-11-01', 0, 0],
        ['2026-11-02', 3, 0.5],
        ['2026-11-03', 0, 0],
      ]);
    });

    it('sums metrics without floating-point dust in the cost', () => {
      const row = { requests: 1, tokens: 2, inputTokens: 1, outputTokens: 1, cost: 0.1, errors: 0 };
      expect(sumMetrics([row, { ...row, cost: 0.2 }])).toEqual({
        requests: 2,
        tokens: 4,
        inputTokens: 2,
        outputTokens: 2,
        cost: 0.3,
        errors: 0,
      });
    });
  });

  describe('ranges and report windows', () => {
    it('turns console ranges into whole UTC days', () => {
      const sut = rangeWindow;
      expect(sut('today', wednesday)).toEqual({
        start: new Date('2026-11-25T00:00:00Z'),
        end: new Date('2026-11-26T00:00:00Z'),
      });
      expect(iso(sut('7d', wednesday).start)).toBe('2026-11-19T00:00:00.000Z');
      expect(iso(sut('30d', wednesday).start)).toBe('2026-10-27T00:00:00.000Z');
      expect(sut('month', wednesday)).toEqual({
        start: new Date('2026-11-01T00:00:00Z'),
        end: new Date('2026-12-01T00:00:00Z'),
      });
    });

    it('reads a bare end date as inclusive and a date-time as exclusive, UTC without a zone', () => {
      expect(parseBound('2026-11-30', 'end')).toEqual(new Date('2026-12-01T00:00:00Z'));
      expect(parseBound('2026-11-30', 'start')).toEqual(new Date('2026-11-30T00:00:00Z'));
      expect(parseBound('2026-11-30T12:00:00', 'end')).toEqual(new Date('2026-11-30T12:00:00Z'));
      expect(parseBound('2026-11-30T12:00:00+02:00', 'start')).toEqual(new Date('2026-11-30T10:00:00Z'));
      expect(parseBound('2026-02-30', 'start')).toBeNull();
    });

    it('defaults to the last 30 days and uses daily rollups for whole days', () => {
      const sut = reportWindow;
      expect(sut(undefined, undefined, wednesday)).toEqual({
        ok: true,
        window: lastDays(wednesday, 30).window,
        granularity: 'day',
      });
      expect(sut('2026-11-01', '2026-11-30', wednesday)).toEqual({
        ok: true,
        window: { start: new Date('2026-11-01T00:00:00Z'), end: new Date('2026-12-01T00:00:00Z') },
        granularity: 'day',
      });
    });

    it('widens a window that is not whole days to whole hours of the hourly rollups', () => {
      expect(reportWindow('2026-11-01T10:30:00Z', '2026-11-01T12:15:00Z', wednesday)).toEqual({
        ok: true,
        window: { start: new Date('2026-11-01T10:00:00Z'), end: new Date('2026-11-01T13:00:00Z') },
        granularity: 'hour',
      });
    });

    it('refuses an empty, reversed or overlong window, naming the field', () => {
      expect(reportWindow('2026-11-02', '2026-11-01', wednesday)).toEqual({
        ok: false,
        field: 'from',
        message: 'from must be before to',
      });
      expect(reportWindow('2024-01-01', '2026-01-01', wednesday)).toMatchObject({ ok: false, field: 'to' });
      expect(reportWindow('2026-13-01', undefined, wednesday)).toMatchObject({ ok: false, field: 'from' });
    });

    it('lists every day a window touches', () => {
      expect(daysOf({ start: new Date('2026-11-29T22:00:00Z'), end: new Date('2026-12-01T01:00:00Z') })).toEqual([
        '2026-11-29',
        '2026-11-30',
        '2026-12-01',
      ]);
    });
  });

  describe('chart geometry', () => {
    it('rounds an axis maximum up to 1, 2 or 5 × 10ⁿ', () => {
      const sut = niceCeiling;
      expect([0, 0.003, 1, 7, 10, 11, 180, 201, 0.3].map(sut)).toEqual([1, 0.005, 1, 10, 10, 20, 200, 500, 0.5]);
      expect(axisTicks(200)).toEqual([0, 50, 100, 150, 200]);
    });

    it('steps an axis in round sizes, and a count axis in whole numbers', () => {
      const sut = niceScale;
      expect(sut(180)).toEqual({ top: 200, step: 50 });
      expect(sut(0.6)).toEqual({ top: 0.8, step: 0.2 });
      expect(sut(0)).toEqual({ top: 1, step: 0.25 });
      expect(sut(1, 4, true)).toEqual({ top: 4, step: 1 });
      expect(sut(0, 4, true)).toEqual({ top: 4, step: 1 });
      expect(sut(29, 4, true)).toEqual({ top: 40, step: 10 });
    });

    it('lays out one bar per value in equal slots, growing up from the bottom', () => {
      const area = { x: 10, y: 20, width: 100, height: 50 };
      const sut = barLayout([0, 5, 10, 20], area, 10, 0.2);
      expect(sut).toEqual([
        { x: 12.5, y: 70, width: 20, height: 0 },
        { x: 37.5, y: 45, width: 20, height: 25 },
        { x: 62.5, y: 20, width: 20, height: 50 },
        // Above the axis maximum: clipped to the plot area.
        { x: 87.5, y: 20, width: 20, height: 50 },
      ]);
      expect(linePoints([0, 10], { x: 0, y: 0, width: 100, height: 50 }, 10)).toEqual([
        { x: 25, y: 50 },
        { x: 75, y: 0 },
      ]);
    });
  });

  describe('usage chart SVG', () => {
    const days = lastDays(wednesday, 30).labels.map((period, i) => ({ period, requests: i, cost: i / 100 }));

    it('draws one bar per day, a cost line, axis labels and an accessible title and summary', () => {
      const sut = usageChartSvg(days, { id: 'c1', title: 'Requests & cost' });
      expect(sut.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
      expect(sut.match(/class="chart-bar"/g)).toHaveLength(30);
      expect(sut.match(/<polyline class="chart-line"/g)).toHaveLength(1);
      expect(sut).toContain('role="img" aria-labelledby="c1-title c1-desc"');
      expect(sut).toContain('<title id="c1-title">Requests &amp; cost</title>');
      expect(sut).toContain('30 days from 2026-10-27 to 2026-11-25: 435 requests, $4.35 in total.');
      expect(sut).toContain('<title>2026-11-25: 29 requests, $0.29</title>');
      expect(sut).toContain('>requests</text>');
      expect(sut).toContain('>cost (USD)</text>');
      expect(sut).toContain('>11-25</text>');
      expect(sut).not.toMatch(/style=/);
    });

    it('escapes what it did not make itself', () => {
      const sut = usageChartSvg(days.slice(0, 2), { id: 'x"><script>', title: '<script>alert("k")</script>' });
      expect(sut).not.toContain('<script>');
      expect(sut).toContain('&lt;script&gt;alert(&quot;k&quot;)&lt;/script&gt;');
      expect(sut).toContain('id="x---script--title"');
      expect(escapeXml(`a&b<c>"d'`)).toBe('a&amp;b&lt;c&gt;&quot;d&#39;');
    });

    it('draws an empty chart without dividing by zero', () => {
      const sut = usageChartSvg(
        days.map((d) => ({ ...d, requests: 0, cost: 0 })),
        { id: 'z', title: 'nothing' },
      );
      expect(sut).not.toMatch(/NaN|Infinity/);
      expect(sut.match(/height="0"/g)).toHaveLength(30);
    });
  });

  it('formats small costs with enough digits to be seen', () => {
    expect(formatUsd(12.5)).toBe('$12.50');
    expect(formatUsd(0.0042)).toBe('$0.0042');
    expect(formatUsd(0)).toBe('$0.00');
  });
});
