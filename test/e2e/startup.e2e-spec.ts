import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import request from 'supertest';
import { csrfFrom } from '../support/test-app';

/**
 * `npm start` as a user runs it: the compiled app (`node dist/src/main.js`, what the start
 * script runs), no DATABASE_URL, so it brings up its own embedded PostgreSQL in the data folder.
 */
const MAIN = path.resolve(__dirname, '../../dist/src/main.js');

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

interface Running {
  child: ChildProcess;
  output: () => string;
  url: string;
  readyAfterMs: number;
}

async function startKeyward(env: Record<string, string>): Promise<Running> {
  const started = Date.now();
  const { DATABASE_URL: _ignored, ...inherited } = process.env;
  const child = spawn(process.execPath, [MAIN], { env: { ...inherited, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not ready after 30 s:\n${output}`)), 30_000);
    const check = () => {
      const ready = /is ready: open (\S+)/.exec(output);
      if (ready) {
        clearTimeout(timer);
        resolve(ready[1]);
      }
    };
    child.stdout!.on('data', check);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before it was ready:\n${output}`));
    });
  });
  return { child, output: () => output, url, readyAfterMs: Date.now() - started };
}

async function stop(running: Running, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  if (running.child.exitCode !== null) return running.child.exitCode;
  return new Promise((resolve) => {
    running.child.once('exit', (code) => resolve(code));
    running.child.kill(signal);
  });
}

describe('npm start on a machine with only Node.js', () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'keyward-start-'));
  let running: Running | undefined;

  afterAll(async () => {
    if (running) await stop(running);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('starts on embedded PostgreSQL, prints the URL and a one-time setup link, and serves the sign-in page', async () => {
    const port = await freePort();
    running = await startKeyward({ PORT: String(port), KEYWARD_DATA_DIR: dataDir, LOG_LEVEL: 'warn' });
    expect(running.url).toBe(`http://127.0.0.1:${port}`);
    expect(running.output()).toMatch(/Generated a master key in .*master\.keys \(mode 0600\)/);
    expect(statSync(path.join(dataDir, 'master.keys')).mode & 0o777).toBe(0o600);
    expect(existsSync(path.join(dataDir, 'postgres', 'PG_VERSION'))).toBe(true);

    const login = await request(running.url).get('/login').expect(200);
    expect(login.text).toContain('Sign in to Keyward');
    await request(running.url).get('/health/ready').expect(200);

    const link = /create the first owner at (\S+)/.exec(running.output())![1];
    const setupPath = link.replace(running.url, '');
    const agent = request.agent(running.url);
    const form = await agent.get(setupPath).expect(200);
    const created = await agent
      .post('/setup')
      .type('form')
      .send({
        _csrf: csrfFrom(form.text),
        token: new URL(link).searchParams.get('token'),
        email: 'first@example.test',
        password: 'first-owner-password',
        confirmPassword: 'first-owner-password',
      })
      .redirects(0);
    expect(created.status).toBe(303);
    expect(created.headers.location).toBe('/admin');
    expect((await agent.get('/admin').expect(200)).text).toContain('first@example.test');

    // The link worked once.
    const again = await request(running.url).get(setupPath).expect(200);
    expect(again.text).toContain('Setup is complete');
    // The setup token itself never reaches the log.
    expect(
      running
        .output()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .join('\n'),
    ).not.toContain(new URL(link).searchParams.get('token'));
  });

  it('stops cleanly on SIGTERM, PostgreSQL included', async () => {
    const code = await stop(running!);
    expect(code).toBe(0);
    expect(existsSync(path.join(dataDir, 'postgres', 'postmaster.pid'))).toBe(false);
    running = undefined;
  });

  it('keeps users and data across a restart', async () => {
    const port = await freePort();
    running = await startKeyward({ PORT: String(port), KEYWARD_DATA_DIR: dataDir, LOG_LEVEL: 'warn' });
    expect(running.output()).not.toMatch(/setup link|first owner at/);
    expect(running.output()).not.toMatch(/Generated a master key/);
    const token = await request(running.url)
      .post('/api/auth/token')
      .send({ email: 'first@example.test', password: 'first-owner-password' })
      .expect(200);
    const users = await request(running.url)
      .get('/api/admin/users')
      .set('Authorization', `Bearer ${token.body.accessToken}`)
      .expect(200);
    expect(users.body.users.map((u: { email: string }) => u.email)).toEqual(['first@example.test']);
    expect(await stop(running, 'SIGINT')).toBe(0);
    running = undefined;
  });

  it('refuses to start without master.keys beside the existing embedded database, and creates no new key', async () => {
    const keyFile = path.join(dataDir, 'master.keys');
    const original = readFileSync(keyFile, 'utf8');
    unlinkSync(keyFile);
    try {
      const { DATABASE_URL: _ignored, ...inherited } = process.env;
      const child = spawn(process.execPath, [MAIN], {
        env: { ...inherited, PORT: '0', KEYWARD_DATA_DIR: dataDir, LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const code = await new Promise((resolve) => child.on('exit', resolve));
      expect(code).toBe(78);
      expect(stderr).toContain(`${keyFile} does not exist`);
      expect(stderr).toContain(`embedded PostgreSQL in ${dataDir}`);
      expect(stderr).not.toMatch(/^\s+at /m);
      expect(existsSync(keyFile)).toBe(false);
      // The embedded server it started for the check is stopped again.
      expect(existsSync(path.join(dataDir, 'postgres', 'postmaster.pid'))).toBe(false);
    } finally {
      writeFileSync(keyFile, original, { mode: 0o600 });
    }
  });

  it('refuses a wrong setting with a message that names the variable and what is allowed', async () => {
    const child = spawn(process.execPath, [MAIN], {
      env: { ...process.env, PORT: 'eighty', KEYWARD_SESSION_IDLE_MINUTES: '0', KEYWARD_DATA_DIR: dataDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(78);
    expect(stderr).toMatch(/PORT must be/);
    expect(stderr).toMatch(/KEYWARD_SESSION_IDLE_MINUTES must be/);
  });
});
