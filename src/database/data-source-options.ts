import type { DataSourceOptions } from 'typeorm';
import { AuditEntry } from '../audit/audit-entry.entity';
import { SetupToken } from '../auth/setup-token.entity';
import { AppSecret } from '../crypto/app-secret.entity';
import { User } from '../auth/users/user.entity';
import { Foundation1764075600000 } from './migrations/1764075600000-Foundation';
import { ProviderPrices1764165600000 } from './migrations/1764165600000-ProviderPrices';
import { ProviderPrice } from '../plugin-system/provider-price.entity';
import { KeyVault1764252000000 } from './migrations/1764252000000-KeyVault';
import { ApiKey } from '../keys/api-key.entity';
import { KeyRotation } from '../rotation/key-rotation.entity';
import { AccessToken } from '../access-tokens/access-token.entity';
import { Gateway1764338400000 } from './migrations/1764338400000-Gateway';
import { LimitsAndBudgets1764400000001 } from './migrations/1764400000001-LimitsAndBudgets';
import { UsageRecordIds1764460000000 } from './migrations/1764460000000-UsageRecordIds';
import { UsageEventsOneIdIndex1764470000000 } from './migrations/1764470000000-UsageEventsOneIdIndex';
import { Alerting1764410000000 } from './migrations/1764410000000-Alerting';
import { Reports1764420000001 } from './migrations/1764420000001-Reports';
import { AccountSecurity1764430000001 } from './migrations/1764430000001-AccountSecurity';
import { AdminSecurity1764440000000 } from './migrations/1764440000000-AdminSecurity';

/**
 * Entities and migrations are listed, not globbed: the list is checked by the compiler and
 * works the same from `src` (tests) and `dist` (production).
 */
export const ENTITIES = [User, SetupToken, AppSecret, AuditEntry, ProviderPrice, ApiKey, KeyRotation, AccessToken];
/** In timestamp order, the order TypeORM runs them in (backups compare this list with the database's). */
export const MIGRATIONS = [
  Foundation1764075600000,
  ProviderPrices1764165600000,
  KeyVault1764252000000,
  Gateway1764338400000,
  LimitsAndBudgets1764400000001,
  Alerting1764410000000,
  Reports1764420000001,
  AccountSecurity1764430000001,
  AdminSecurity1764440000000,
  UsageRecordIds1764460000000,
  UsageEventsOneIdIndex1764470000000,
];

export function dataSourceOptions(url: string): DataSourceOptions {
  return {
    type: 'postgres',
    url,
    entities: ENTITIES,
    migrations: MIGRATIONS,
    migrationsTableName: 'migrations',
    migrationsTransactionMode: 'each',
    // Never `synchronize`: the schema comes only from migrations.
    synchronize: false,
    // Connections are kept: a new one costs a SCRAM login (4,096 PBKDF2 rounds on each side)
    // and a PostgreSQL backend process. node-postgres closes idle ones after 10 s by default,
    // so periodic work (usage batches, cache refreshes, sweeps) kept opening new ones.
    extra: { max: 10, min: 2, idleTimeoutMillis: 300_000, connectionTimeoutMillis: 5000 },
  };
}
