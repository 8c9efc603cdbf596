import { ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';

import { freePort, MAIN } from './keyward-process';

export { freePort, MAIN };
/** The compiled CLI, as `npx keyward` runs it. */
export const CLI = path.resolve(__dirname, '../../dist/src/cli/main.js');

export interface RunningKeyward {
  child: ChildProcess;
  output: () => string;
  url: string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** The environment without the test runner's own database and Redis settings. */
function baseEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const { DATABASE_URL: _db, KEYWARD_MASTER_KEYS: _keys, ...inherited } = process.env;
  return { ...inherited, LOG_LEVEL: 'warn', ...env };
}

/** Starts `node dist/src/main.js` and resolves once it printed that it is ready. */
export async function startKeyward(env: Record<string, string>, timeoutMs = 60_000): Promise<RunningKeyward> {
  const port = env.PORT ?? String(await freePort());
  const child = spawn(process.execPath, [MAIN], {
    env: baseEnv({ ...env, PORT: port }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not ready after ${timeoutMs} ms:\n${output}`)), timeoutMs);
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
  const stop = (signal: NodeJS.Signals = 'SIGTERM') =>
    new Promise<number | null>((resolve) => {
      if (child.exitCode !== null) return resolve(child.exitCode);
      child.once('exit', (code) => resolve(code));
      child.kill(signal);
    });
  return { child, output: () => output, url, stop };
}

export interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end (the app expected to refuse, or a CLI command). */
export async function runToExit(
  args: string[],
  env: Record<string, string>,
  input?: string,
  timeoutMs = 120_000,
): Promise<Finished> {
  const child = spawn(process.execPath, args, { env: baseEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.end(input ?? '');
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** `npx keyward <args>` against the given environment. */
export const keywardCli = (args: string[], env: Record<string, string>, input?: string) =>
  runToExit([CLI, ...args], env, input);
