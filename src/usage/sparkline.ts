import { escapeXml } from './chart';
import { formatUsd } from './usage-math';

/**
 * Small server-rendered SVGs for the dashboard and reports: a sparkline of a few days' cost,
 * and horizontal bars of who spent what. Styled by CSS classes only (the CSP allows no inline
 * styles); each carries a title and a text summary for screen readers.
 */

const round2 = (n: number) => Math.round(n * 100) / 100;

export function sparklineSvg(
  values: { period: string; cost: number }[],
  options: { id: string; title: string },
): string {
  const width = 240;
  const height = 48;
  const pad = 4;
  const max = Math.max(0, ...values.map((v) => v.cost));
  const step = values.length > 1 ? (width - 2 * pad) / (values.length - 1) : 0;
  const points = values.map((v, i) => ({
    x: round2(pad + i * step),
    y: round2(height - pad - (max > 0 ? (v.cost / max) * (height - 2 * pad) : 0)),
  }));
  const summary = values.map((v) => `${v.period}: ${formatUsd(v.cost)}`).join(', ');
  const id = options.id.replace(/[^A-Za-z0-9_-]/g, '-');
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" class="sparkline" viewBox="0 0 ${width} ${height}" role="img" aria-labelledby="${id}-title ${id}-desc">`,
    `<title id="${id}-title">${escapeXml(options.title)}</title>`,
    `<desc id="${id}-desc">${escapeXml(summary || 'No days to show.')}</desc>`,
    points.length > 0
      ? `<polyline class="sparkline-line" fill="none" points="${points.map((p) => `${p.x},${p.y}`).join(' ')}"/>`
      : '',
    ...points.map(
      (p, i) =>
        `<circle class="sparkline-dot" cx="${p.x}" cy="${p.y}" r="2.5"><title>${escapeXml(`${values[i].period}: ${formatUsd(values[i].cost)}`)}</title></circle>`,
    ),
    '</svg>',
  ].join('');
}

/** One bar per item, longest for the largest value; labels and values are written beside them. */
export function barsSvg(
  items: { label: string; value: number; text: string }[],
  options: { id: string; title: string },
): string {
  const width = 480;
  const row = 22;
  const labelWidth = 170;
  const valueWidth = 90;
  const height = Math.max(1, items.length) * row + 4;
  const max = Math.max(0, ...items.map((i) => i.value));
  const id = options.id.replace(/[^A-Za-z0-9_-]/g, '-');
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="bars" viewBox="0 0 ${width} ${height}" role="img" aria-labelledby="${id}-title ${id}-desc">`,
    `<title id="${id}-title">${escapeXml(options.title)}</title>`,
    `<desc id="${id}-desc">${escapeXml(items.map((i) => `${i.label}: ${i.text}`).join(', ') || 'Nothing to show.')}</desc>`,
  ];
  items.forEach((item, i) => {
    const y = i * row + 2;
    const barWidth = max > 0 ? round2((item.value / max) * (width - labelWidth - valueWidth)) : 0;
    const label = item.label.length > 26 ? `${item.label.slice(0, 25)}…` : item.label;
    out.push(
      `<text class="bars-label" x="${labelWidth - 6}" y="${y + 15}" text-anchor="end">${escapeXml(label)}</text>`,
      `<rect class="bars-bar" x="${labelWidth}" y="${y + 3}" width="${barWidth}" height="${row - 8}"><title>${escapeXml(`${item.label}: ${item.text}`)}</title></rect>`,
      `<text class="bars-value" x="${labelWidth + barWidth + 6}" y="${y + 15}">${escapeXml(item.text)}</text>`,
    );
  });
  out.push('</svg>');
  return out.join('');
}
