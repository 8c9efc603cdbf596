import 'reflect-metadata';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { SetupService } from '../../src/auth/setup.service';
import { createApp, KEYWARD_VERSION, loadProviderPlugins } from '../../src/bootstrap';
import { loadConfig } from '../../src/config/config';
import { Keyring } from '../../src/crypto/keyring';
import { createTestDatabase } from './test-database';

export const OWNER = { email: 'owner@example.test', password: 'owner-password-123' };

/** Every line the app logged, so that tests can check what reaches the log. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) if (line) this.lines.push(line);
    done();
  }
  get text(): string {
    return this.lines.join('\n');
  }
}

export interface TestApp {
  app: NestExpressApplication;
  http: ReturnType<NestExpressApplication['getHttpServer']>;
  logs: LogCapture;
  dataSource: DataSource;
  databaseUrl: string;
  keyring: Keyring;
  close(): Promise<void>;
}

/**
 * The real application — same module, same Express wiring as `npm start` — on a fresh database
 * of the run's PostgreSQL, with the first owner created from the environment as at a real start.
 */
export async function startTestApp(
  env: NodeJS.ProcessEnv = {},
  /** A second instance: the same database and master key as another test app. */
  shared?: { databaseUrl: string; keyring: Keyring },
): Promise<TestApp> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'keyward-app-'));
  const databaseUrl = shared?.databaseUrl ?? (await createTestDatabase());
  const config = loadConfig({
    KEYWARD_DATA_DIR: dataDir,
    KEYWARD_ADMIN_EMAIL: OWNER.email,
    KEYWARD_ADMIN_PASSWORD: OWNER.password,
    LOG_LEVEL: 'info',
    // Tests sign in far more often than a person; the limit itself has its own test.
    KEYWARD_SIGNIN_RATE_LIMIT: '1000',
    ...env,
  });
  const logs = new LogCapture();
  const keyring = shared?.keyring ?? new Keyring([[1, Keyring.generateKey()]]);
  const app = await createApp({
    config,
    keyring,
    databaseUrl,
    logStream: logs,
    plugins: loadProviderPlugins(config),
    info: { databaseMode: 'external', masterKeySource: 'environment', masterKeyVersion: 1, version: KEYWARD_VERSION },
  });
  await app.get(SetupService).prepareFirstOwner();
  return {
    app,
    http: app.getHttpServer(),
    logs,
    dataSource: app.get(DataSource),
    databaseUrl,
    keyring,
    close: async () => {
      await app.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function apiToken(http: TestApp['http'], email = OWNER.email, password = OWNER.password): Promise<string> {
  const res = await request(http).post('/api/auth/token').send({ email, password }).expect(200);
  return (res.body as { accessToken: string }).accessToken;
}

/** Creates a user through the users API, as an owner would. */
export async function createUser(
  http: TestApp['http'],
  ownerToken: string,
  role: string,
  email = `${role}-${randomBytes(3).toString('hex')}@example.test`,
  password = `${role}-password-123`,
): Promise<{ id: string; email: string; password: string; role: string }> {
  const res = await request(http)
    .post('/api/admin/users')
    .set('Authorization', `Bearer ${ownerToken}`)
    .send({ email, password, role })
    .expect(201);
  return { id: (res.body as { id: string }).id, email, password, role };
}

/**
 * A browser-like console session: keeps cookies, reads the CSRF token from the pages it gets,
 * signs in through the real form.
 */
export class ConsoleSession {
  readonly agent: ReturnType<typeof request.agent>;
  csrf = '';

  constructor(http: TestApp['http']) {
    this.agent = request.agent(http);
  }

  /** Loads a page and remembers the CSRF token it carries. */
  async page(url: string, expectedStatus = 200) {
    const res = await this.agent.get(url).redirects(0);
    if (res.status !== expectedStatus) {
      throw new Error(`GET ${url}: expected ${expectedStatus}, got ${res.status}: ${res.text.slice(0, 300)}`);
    }
    this.csrf = csrfFrom(res.text) ?? this.csrf;
    return res;
  }

  async signIn(email = OWNER.email, password = OWNER.password) {
    await this.page('/login');
    const res = await this.agent.post('/login').type('form').send({ _csrf: this.csrf, email, password }).redirects(0);
    if (res.status !== 303) throw new Error(`sign-in failed with ${res.status}: ${res.text.slice(0, 300)}`);
    await this.page('/admin');
    return res;
  }

  post(url: string, form: Record<string, string> = {}) {
    return this.agent
      .post(url)
      .type('form')
      .send({ _csrf: this.csrf, ...form })
      .redirects(0);
  }

  htmx(method: 'get' | 'post', url: string, form: Record<string, string> = {}) {
    const req = this.agent[method](url).set('HX-Request', 'true').redirects(0);
    return method === 'post' ? req.set('x-csrf-token', this.csrf).type('form').send(form) : req;
  }
}

export function csrfFrom(html: string): string | undefined {
  return /name="_csrf" value="([^"]+)"/.exec(html)?.[1] ?? /"x-csrf-token": "([^"]+)"/.exec(html)?.[1];
}

export function cookieNamed(res: request.Response, name: string): string | undefined {
  const cookies = ([] as string[]).concat(res.headers['set-cookie'] ?? []);
  return cookies.find((c) => c.startsWith(`${name}=`));
}
