import { createHmac } from 'node:crypto';
import { createTransport } from 'nodemailer';

/** What a channel needs to send, its secret opened for this one send. */
export interface ChannelTarget {
  id: string;
  name: string;
  type: 'webhook' | 'slack' | 'email';
  config: ChannelConfig;
  secret: string | null;
}

export interface ChannelConfig {
  url?: string;
  smtpHost?: string;
  smtpPort?: number;
  smtpSecure?: boolean;
  smtpUser?: string;
  from?: string;
  to?: string[];
}

/** One message, in the forms the channel types want. */
export interface OutgoingMessage {
  /** The webhook's JSON body. */
  json: Record<string, unknown>;
  /** One line for Slack and for the email subject. */
  title: string;
  /** Plain-text body (Slack, email fallback). */
  text: string;
  /** HTML email body, when there is more than text (reports). */
  html?: string;
  attachments?: { filename: string; content: string; contentType: string }[];
}

export interface SendResult {
  ok: boolean;
  statusCode: number | null;
  error: string | null;
}

const TIMEOUT_MS = 10_000;

/** `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, as receivers verify it. */
export function signatureHeader(secret: string, body: string, at: Date = new Date()): string {
  const t = Math.floor(at.getTime() / 1000);
  const v1 = createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
  return `t=${t},v1=${v1}`;
}

export async function send(target: ChannelTarget, message: OutgoingMessage, deliveryId: string): Promise<SendResult> {
  try {
    switch (target.type) {
      case 'webhook':
        return await sendWebhook(target, message, deliveryId);
      case 'slack':
        return await postJson(target.secret ?? '', { text: `*${message.title}*\n${message.text}` }, {});
      case 'email':
        return await sendEmail(target, message);
    }
  } catch (error) {
    return { ok: false, statusCode: null, error: describe(error, target) };
  }
}

async function sendWebhook(target: ChannelTarget, message: OutgoingMessage, deliveryId: string): Promise<SendResult> {
  const body = JSON.stringify(message.json);
  return postJson(target.config.url ?? '', body, {
    'x-keyward-signature': signatureHeader(target.secret ?? '', body),
    'x-keyward-delivery': deliveryId,
  });
}

async function postJson(url: string, body: string | object, headers: Record<string, string>): Promise<SendResult> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'user-agent': 'Keyward-Alerts', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    redirect: 'manual',
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  // The answer's body is not kept: a receiver could echo what it got, secrets included.
  await res.body?.cancel().catch(() => undefined);
  return res.ok
    ? { ok: true, statusCode: res.status, error: null }
    : { ok: false, statusCode: res.status, error: `answered ${res.status}` };
}

async function sendEmail(target: ChannelTarget, message: OutgoingMessage): Promise<SendResult> {
  const c = target.config;
  const transport = createTransport({
    host: c.smtpHost,
    port: c.smtpPort ?? (c.smtpSecure ? 465 : 587),
    secure: c.smtpSecure ?? false,
    auth: c.smtpUser ? { user: c.smtpUser, pass: target.secret ?? '' } : undefined,
    connectionTimeout: TIMEOUT_MS,
    greetingTimeout: TIMEOUT_MS,
    socketTimeout: TIMEOUT_MS,
  });
  try {
    const info = await transport.sendMail({
      from: c.from,
      to: c.to,
      subject: `[Keyward] ${message.title}`,
      text: message.text,
      html: message.html,
      attachments: message.attachments,
    });
    const code = Number(/^(\d{3})/.exec(String(info.response ?? ''))?.[1] ?? 250);
    return { ok: true, statusCode: code, error: null };
  } finally {
    transport.close();
  }
}

/** A failure as the delivery log keeps it: never a URL (a Slack URL is its secret) or password. */
function describe(error: unknown, target: ChannelTarget): string {
  let text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  for (const secret of [target.secret, target.config.url]) {
    if (secret) text = text.split(secret).join('[redacted]');
  }
  return text.replace(/https?:\/\/\S+/g, '[url]').slice(0, 300);
}
