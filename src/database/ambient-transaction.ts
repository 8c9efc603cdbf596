import { AsyncLocalStorage } from 'node:async_hooks';
import type { DataSource, EntityManager, QueryRunner } from 'typeorm';

/**
 * One transaction per state-changing request, shared by every service the request calls.
 *
 * The audit entry of a change must commit with the change or not at all. Rather than thread an
 * EntityManager through every service, the request's transaction is kept in AsyncLocalStorage
 * and the DataSource answers with it: `dataSource.manager`, `getRepository()`, `transaction()`
 * (which then opens a savepoint), `query()` and `createQueryBuilder()` all join it. Outside a
 * request (schedulers, the gateway) nothing changes.
 */
const ambient = new AsyncLocalStorage<EntityManager>();

const SHARED = Symbol('keyward.ambientTransactions');

/** The transaction of the current request, if it is still open. */
export function ambientManager(): EntityManager | undefined {
  const manager = ambient.getStore();
  const runner = manager?.queryRunner;
  return runner && !runner.isReleased && runner.isTransactionActive ? manager : undefined;
}

/**
 * Runs `work` outside the request's transaction: for what must stay written even when the
 * request then fails and its transaction rolls back (an audit entry of a refusal).
 */
export function outsideAmbientTransaction<T>(work: () => T): T {
  return ambient.exit(work);
}

/**
 * Runs `work` in a new transaction that every DataSource call inside it joins. Nested calls
 * join the outer transaction through a savepoint.
 */
export async function inAmbientTransaction<T>(
  dataSource: DataSource,
  work: (manager: EntityManager) => Promise<T>,
): Promise<T> {
  const outer = ambientManager();
  if (outer) return outer.transaction(work);
  const runner = dataSource.createQueryRunner();
  serializeQueries(runner);
  try {
    await runner.startTransaction();
    const result = await ambient.run(runner.manager, () => work(runner.manager));
    await runner.commitTransaction();
    return result;
  } catch (error) {
    if (runner.isTransactionActive) await runner.rollbackTransaction().catch(() => undefined);
    throw error;
  } finally {
    await runner.release();
  }
}

/**
 * Services of one request may query at the same time (an event listener's NOTIFY while the
 * request reads back what it wrote); in a shared transaction those calls go to one connection.
 * node-postgres queues them but deprecates that (pg 9 will refuse), so they are queued here, in
 * the order they were made, which is the order pg would have run them in.
 */
function serializeQueries(runner: QueryRunner): void {
  const query = runner.query.bind(runner) as (...args: unknown[]) => Promise<unknown>;
  let last: Promise<unknown> = Promise.resolve();
  runner.query = ((...args: unknown[]) => {
    const next = last.then(() => query(...args));
    last = next.catch(() => undefined);
    return next;
  }) as QueryRunner['query'];
}

/**
 * Makes `dataSource` answer with the ambient transaction while one is open. Called once, when
 * the application starts; idempotent.
 */
export function shareAmbientTransactions(dataSource: DataSource): void {
  const target = dataSource as DataSource & { [SHARED]?: true };
  if (target[SHARED]) return;
  target[SHARED] = true;

  const base = dataSource.manager;
  Object.defineProperty(dataSource, 'manager', {
    configurable: true,
    enumerable: true,
    get: () => ambientManager() ?? base,
    set: () => undefined,
  });

  const query = dataSource.query.bind(dataSource);
  dataSource.query = ((sql: string, parameters?: unknown[], runner?: QueryRunner) =>
    query(sql, parameters, runner ?? ambientManager()?.queryRunner)) as DataSource['query'];

  const createQueryBuilder = dataSource.createQueryBuilder.bind(dataSource) as (...args: unknown[]) => unknown;
  dataSource.createQueryBuilder = ((entityOrRunner?: unknown, alias?: string, runner?: QueryRunner) => {
    const shared = ambientManager()?.queryRunner;
    if (alias !== undefined) return createQueryBuilder(entityOrRunner, alias, runner ?? shared);
    return createQueryBuilder(entityOrRunner ?? shared);
  }) as DataSource['createQueryBuilder'];
}

/** connect-pg-simple's store, as far as joinAmbientTransaction touches it. */
interface PgSessionStore {
  _asyncQuery(query: string, params: unknown[], noTableCreation?: boolean): Promise<unknown>;
}

/**
 * Lets the console's session store (connect-pg-simple, which queries its own pool) join the
 * request's transaction while one is open. Without it, a handler that changed session rows (sign
 * out everywhere) and then regenerates its own session would wait on its own uncommitted locks
 * from a second connection, for ever. Saves after the response run after the commit, as before.
 */
export function joinAmbientTransaction(store: object): void {
  const sessions = store as PgSessionStore;
  if (typeof sessions._asyncQuery !== 'function') return;
  const original = sessions._asyncQuery.bind(sessions);
  sessions._asyncQuery = async (query, params, noTableCreation) => {
    const runner = ambientManager()?.queryRunner;
    if (!runner) return original(query, params, noTableCreation);
    const result = (await runner.query(query, params, true)) as { records?: unknown[] };
    return result.records?.[0];
  };
}
