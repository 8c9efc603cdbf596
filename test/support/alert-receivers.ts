import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

/** The fields of Keyward's webhook and Slack bodies that tests look at. */
export interface WebhookBody {
  type?: string;
  text?: string;
  summary?: string;
  rule?: { id: string; name: string };
  alert?: {
    id: string;
    kind: string;
    severity: string;
    message: string;
    subject: { type: string; id: string | null };
    details: { threshold?: number; used?: number; limit?: number; percent?: number; exceedsOn?: string };
  };
  report?: { id: string; link: string };
}

export interface ReceivedWebhook {
  at: number;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  json: WebhookBody;
}

/** A webhook receiver on loopback: records every POST; can be told to fail the next few. */
export async function startWebhookReceiver() {
  const received: ReceivedWebhook[] = [];
  let failNext = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let json: WebhookBody = {};
      try {
        json = JSON.parse(body);
      } catch {
        /* recorded as text */
      }
      received.push({ at: Date.now(), path: req.url ?? '/', headers: req.headers, body, json });
      if (failNext > 0) {
        failNext--;
        res.writeHead(500).end('try again');
        return;
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    received,
    failNextRequests(n: number) {
      failNext = n;
    },
    /** Waits until `predicate` holds over what arrived, or the time is up. */
    async waitFor(predicate: (all: ReceivedWebhook[]) => boolean, timeoutMs = 5000): Promise<boolean> {
      const until = Date.now() + timeoutMs;
      while (Date.now() < until) {
        if (predicate(received)) return true;
        await new Promise((r) => setTimeout(r, 25));
      }
      return predicate(received);
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** What a receiver does with `x-keyward-signature` (the README's snippet, in test form). */
export function verifySignature(secret: string, header: string, body: string, toleranceSeconds = 300): boolean {
  const parts = Object.fromEntries(header.split(',').map((p) => p.split('=') as [string, string]));
  const t = Number(parts.t);
  if (!Number.isInteger(t) || Math.abs(Date.now() / 1000 - t) > toleranceSeconds || !parts.v1) return false;
  const expected = createHmac('sha256', secret).update(`${t}.${body}`).digest();
  const given = Buffer.from(parts.v1, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export interface ReceivedMail {
  from: string | undefined;
  to: string[];
  raw: string;
  auth?: { username?: string; password?: string };
}

/** An SMTP server on loopback (plain, with AUTH allowed), collecting every message. */
export async function startSmtpReceiver() {
  const mails: ReceivedMail[] = [];
  const server = new SMTPServer({
    secure: false,
    disabledCommands: ['STARTTLS'],
    allowInsecureAuth: true,
    authOptional: true,
    logger: false,
    onAuth(auth, session, callback) {
      (session as unknown as { creds: ReceivedMail['auth'] }).creds = {
        username: auth.username,
        password: auth.password ?? undefined,
      };
      callback(null, { user: auth.username });
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        mails.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : undefined,
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks).toString('utf8'),
          auth: (session as unknown as { creds?: ReceivedMail['auth'] }).creds,
        });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.server.address() as AddressInfo).port;
  return {
    port,
    mails,
    async waitFor(predicate: (all: ReceivedMail[]) => boolean, timeoutMs = 5000): Promise<boolean> {
      const until = Date.now() + timeoutMs;
      while (Date.now() < until) {
        if (predicate(mails)) return true;
        await new Promise((r) => setTimeout(r, 25));
      }
      return predicate(mails);
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
