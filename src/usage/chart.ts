import {
  axisTicks,
  barLayout,
  formatCompact,
  formatCount,
  formatUsd,
  linePoints,
  niceScale,
  type PlotArea,
} from './usage-math';

/** One day of the chart: its `YYYY-MM-DD` label, requests (bars) and cost (line). */
export interface ChartDay {
  period: string;
  requests: number;
  cost: number;
}

export interface ChartOptions {
  /** Prefix of the element ids (title, desc); unique on the page. */
  id: string;
  title: string;
}

const TICKS = 4;
const WIDTH = 720;
const HEIGHT = 260;
const AREA: PlotArea = { x: 56, y: 28, width: WIDTH - 56 - 64, height: HEIGHT - 28 - 44 };

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
/** Text and attribute values: the title may hold a key name, which an admin typed. */
export const escapeXml = (value: string) => value.replace(/[&<>"']/g, (c) => ENTITIES[c]);

const idOf = (value: string) => value.replace(/[^A-Za-z0-9_-]/g, '-');
const shortDay = (period: string) => period.slice(5);

/**
 * The usage of a run of days as an SVG: requests as bars on the left axis, cost as a line on
 * the right one. Built on the server, so the page needs no script; styled by CSS classes only,
 * since the CSP allows no inline styles. Screen readers get the title and a summary (`desc`),
 * and each bar carries its day's numbers as a tooltip title.
 */
export function usageChartSvg(days: ChartDay[], options: ChartOptions): string {
  const id = idOf(options.id);
  const requestsTop = niceScale(Math.max(0, ...days.map((d) => d.requests)), TICKS, true).top;
  const costTop = niceScale(Math.max(0, ...days.map((d) => d.cost)), TICKS).top;
  const bars = barLayout(
    days.map((d) => d.requests),
    AREA,
    requestsTop,
  );
  const points = linePoints(
    days.map((d) => d.cost),
    AREA,
    costTop,
  );
  const bottom = AREA.y + AREA.height;
  const right = AREA.x + AREA.width;

  const totalRequests = days.reduce((a, d) => a + d.requests, 0);
  const totalCost = days.reduce((a, d) => a + d.cost, 0);
  const first = days[0]?.period ?? '';
  const last = days[days.length - 1]?.period ?? '';
  const description =
    days.length === 0
      ? 'No days to show.'
      : `${days.length} days from ${first} to ${last}: ${formatCount(totalRequests)} requests, ` +
        `${formatUsd(totalCost)} in total. Bars show requests per day (left axis), the line shows cost (right axis).`;

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" ` +
      `aria-labelledby="${id}-title ${id}-desc" preserveAspectRatio="xMidYMid meet">`,
    `<title id="${id}-title">${escapeXml(options.title)}</title>`,
    `<desc id="${id}-desc">${escapeXml(description)}</desc>`,
  );

  // Grid and both axes' tick labels share the four horizontal lines.
  const requestTicks = axisTicks(requestsTop, TICKS);
  const costTicks = axisTicks(costTop, TICKS);
  out.push('<g class="chart-grid" aria-hidden="true">');
  requestTicks.forEach((tick, i) => {
    const y = Math.round((bottom - (tick / requestsTop) * AREA.height) * 100) / 100;
    out.push(`<line x1="${AREA.x}" x2="${right}" y1="${y}" y2="${y}"/>`);
    out.push(`<text class="chart-tick" x="${AREA.x - 6}" y="${y + 4}" text-anchor="end">${formatCompact(tick)}</text>`);
    out.push(
      `<text class="chart-tick chart-tick-cost" x="${right + 6}" y="${y + 4}" text-anchor="start">` +
        `${escapeXml(formatUsd(costTicks[i]))}</text>`,
    );
  });
  out.push('</g>');

  out.push('<g class="chart-bars">');
  bars.forEach((bar, i) => {
    const day = days[i];
    const label = `${day.period}: ${formatCount(day.requests)} requests, ${formatUsd(day.cost)}`;
    out.push(
      `<rect class="chart-bar" x="${bar.x}" y="${bar.y}" width="${bar.width}" height="${bar.height}" ` +
        `data-day="${escapeXml(day.period)}"><title>${escapeXml(label)}</title></rect>`,
    );
  });
  out.push('</g>');

  if (points.length > 0) {
    out.push(
      `<polyline class="chart-line" fill="none" points="${points.map((p) => `${p.x},${p.y}`).join(' ')}" aria-hidden="true"/>`,
    );
  }

  // Day labels: about one a week, and always the last day.
  out.push('<g class="chart-axis" aria-hidden="true">');
  out.push(`<line x1="${AREA.x}" x2="${right}" y1="${bottom}" y2="${bottom}"/>`);
  const every = Math.max(1, Math.ceil(days.length / 6));
  days.forEach((day, i) => {
    if (i % every !== 0 && i !== days.length - 1) return;
    if (i !== days.length - 1 && days.length - 1 - i < every / 2) return;
    const x = points[i].x;
    out.push(
      `<text class="chart-tick" x="${x}" y="${bottom + 16}" text-anchor="middle">${escapeXml(shortDay(day.period))}</text>`,
    );
  });
  out.push(
    `<text class="chart-axis-title" x="${AREA.x}" y="16" text-anchor="start">requests</text>`,
    `<text class="chart-axis-title chart-tick-cost" x="${right}" y="16" text-anchor="end">cost (USD)</text>`,
    `<text class="chart-axis-title" x="${AREA.x + AREA.width / 2}" y="${HEIGHT - 6}" text-anchor="middle">day (UTC)</text>`,
  );
  out.push('</g>');
  out.push('</svg>');
  return out.join('');
}
