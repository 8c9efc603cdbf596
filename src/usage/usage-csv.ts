import { stringify } from 'csv-stringify/sync';
import type { ReportGroup } from './dto/usage-report.query';
import type { UsageReport } from './usage-reports.service';

const GROUP_COLUMNS: Record<ReportGroup, [header: string, value: (r: UsageReport['rows'][number]) => unknown][]> = {
  key: [
    ['key_id', (r) => r.keyId ?? ''],
    ['key_name', (r) => (r.keyId ? (r.keyName ?? 'deleted key') : 'No key: refused by Keyward')],
    ['provider', (r) => r.provider],
  ],
  provider: [['provider', (r) => r.provider]],
  model: [
    ['provider', (r) => r.provider],
    ['model', (r) => r.model ?? ''],
  ],
  token: [
    ['access_token_id', (r) => r.accessTokenId ?? ''],
    ['access_token_name', (r) => (r.accessTokenId ? (r.tokenName ?? 'deleted token') : 'no access token')],
  ],
  day: [['day', (r) => r.day]],
};

const usd = (n: number) => n.toFixed(8).replace(/0+$/, '').replace(/\.$/, '');

/**
 * A usage report as CSV: one line per group, then a `total` line; the window and filters are in
 * the file name the controller gives it. Costs in USD with up to 8 decimals, as stored.
 */
export function usageReportCsv(report: UsageReport): string {
  const group = GROUP_COLUMNS[report.groupBy];
  const header = [
    ...group.map(([h]) => h),
    'requests',
    'input_tokens',
    'output_tokens',
    'total_tokens',
    'errors',
    'error_rate',
    'cost_usd',
    'refusals',
    'reported_requests',
    'unpriced_requests',
  ];
  const metrics = (r: UsageReport['rows'][number] | UsageReport['totals']) => [
    r.requests,
    r.inputTokens,
    r.outputTokens,
    r.tokens,
    r.errors,
    r.errorRate.toFixed(4),
    usd(r.cost),
  ];
  const rows = report.rows.map((r) => [
    ...group.map(([, value]) => value(r)),
    ...metrics(r),
    r.refusals ?? 0,
    r.reportedRequests ?? 0,
    r.unpricedRequests ?? 0,
  ]);
  const refusals = report.rows.reduce((a, r) => a + (r.refusals ?? 0), 0);
  const reported = report.rows.reduce((a, r) => a + (r.reportedRequests ?? 0), 0);
  const unpriced = report.rows.reduce((a, r) => a + (r.unpricedRequests ?? 0), 0);
  const total = [
    'total',
    ...group.slice(1).map(() => ''),
    ...metrics(report.totals),
    ...(report.groupBy === 'day' ? ['', '', ''] : [refusals, reported, unpriced]),
  ];
  return stringify([...rows, total], { header: true, columns: header });
}
