import { alertMessage, reportMessage } from './alert-messages';
import type { AlertRule } from './alert.types';

describe('alert messages', () => {
  const rule: AlertRule = {
    id: 'r1',
    name: 'Key limits',
    kind: 'usage_threshold',
    severity: 'critical',
    enabled: true,
    scopeType: 'all',
    scopeId: null,
    params: { thresholds: [80] },
    channelIds: [],
    createdBy: null,
    createdAt: new Date(),
    updatedAt: new Date(),
  };

  it('gives an alert a title with its severity, and the documented JSON', () => {
    const sut = alertMessage('alert.fired', rule, {
      id: 'a1',
      openedAt: new Date('2026-12-03T10:00:00Z'),
      dedupeKey: 'key:k1:80',
      subjectType: 'key',
      subjectId: 'k1',
      message: 'The key used 80 %.',
      details: { threshold: 80 },
    });
    expect(sut.title).toBe('CRITICAL: Key limits');
    expect(sut.text).toBe('The key used 80 %.');
    expect(sut.json).toEqual({
      type: 'alert.fired',
      alert: {
        id: 'a1',
        kind: 'usage_threshold',
        severity: 'critical',
        message: 'The key used 80 %.',
        subject: { type: 'key', id: 'k1' },
        details: { threshold: 80 },
        openedAt: '2026-12-03T10:00:00.000Z',
        link: '/admin/alerts?kind=usage_threshold',
      },
      rule: { id: 'r1', name: 'Key limits' },
    });
  });

  it('turns a report into an email with the CSV and a text summary with its link', () => {
    const sut = reportMessage({
      id: 'rep1',
      kind: 'daily',
      periodStart: new Date('2026-12-02T00:00:00Z'),
      periodEnd: new Date('2026-12-03T00:00:00Z'),
      summaryHtml: '<style>p{}</style><h1>2 Dec</h1><p>Spend &amp; errors: <b>$3</b></p>',
      csv: 'a,b\n',
    });
    expect(sut.title).toBe('Daily usage report 2026-12-02');
    expect(sut.json).toMatchObject({ summary: '2 Dec Spend & errors: $3', report: { link: '/admin/reports/rep1' } });
    expect(sut.text).toContain('Full report: /admin/reports/rep1');
    expect(sut.attachments).toEqual([
      { filename: 'keyward-daily-2026-12-02.csv', content: 'a,b\n', contentType: 'text/csv' },
    ]);
  });
});
