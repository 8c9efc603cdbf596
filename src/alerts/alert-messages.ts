import type { AlertRule, Firing } from './alert.types';
import type { OutgoingMessage } from './channel-senders';

/** The payload `report.generated` carries (emitted by the reports scheduler). */
export interface ReportGeneratedEvent {
  id: string;
  kind: 'daily' | 'monthly';
  periodStart: Date;
  periodEnd: Date;
  summaryHtml: string;
  csv: string;
}
export const REPORT_GENERATED = 'report.generated';

type AlertFacts = Firing & { id: string; openedAt: Date };

/** One alert as every channel type gets it; the webhook's JSON is the documented contract. */
export function alertMessage(
  type: 'alert.fired' | 'alert.resolved',
  rule: AlertRule,
  alert: AlertFacts,
): OutgoingMessage {
  const verb = type === 'alert.fired' ? rule.severity.toUpperCase() : 'RESOLVED';
  return {
    json: {
      type,
      alert: {
        id: alert.id,
        kind: rule.kind,
        severity: rule.severity,
        message: alert.message,
        subject: { type: alert.subjectType, id: alert.subjectId },
        details: alert.details,
        openedAt: new Date(alert.openedAt).toISOString(),
        link: `/admin/alerts?kind=${rule.kind}`,
      },
      rule: { id: rule.id, name: rule.name },
    },
    title: `${verb}: ${rule.name}`,
    text: alert.message,
  };
}

export function testMessage(channelName: string, at: Date = new Date()): OutgoingMessage {
  const text = `This is a test from Keyward to the channel "${channelName}", sent ${at.toISOString()}.`;
  return { json: { type: 'test', message: text, sentAt: at.toISOString() }, title: 'Test alert', text };
}

/** A report: email gets the HTML summary and the CSV; webhook and Slack a summary with a link. */
export function reportMessage(report: ReportGeneratedEvent): OutgoingMessage {
  const start = new Date(report.periodStart).toISOString();
  const end = new Date(report.periodEnd).toISOString();
  const link = `/admin/reports/${report.id}`;
  const title = `${report.kind === 'daily' ? 'Daily' : 'Monthly'} usage report ${start.slice(0, report.kind === 'daily' ? 10 : 7)}`;
  const text = `${title}: ${textOf(report.summaryHtml).slice(0, 2000)}\nFull report: ${link}`;
  return {
    json: {
      type: 'report.generated',
      report: { id: report.id, kind: report.kind, periodStart: start, periodEnd: end, link },
      summary: textOf(report.summaryHtml),
    },
    title,
    text,
    html: report.summaryHtml,
    attachments: [
      { filename: `keyward-${report.kind}-${start.slice(0, 10)}.csv`, content: report.csv, contentType: 'text/csv' },
    ],
  };
}

/** The summary's words without markup, for Slack and plain-text bodies. */
function textOf(html: string): string {
  return html
    .replace(/<(script|style)[\s\S]*?<\/\1>/gi, '')
    .replace(/<[^>]+>/g, ' ')
    .replace(/&nbsp;/g, ' ')
    .replace(/&amp;/g, '&')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/\s+/g, ' ')
    .trim();
}
