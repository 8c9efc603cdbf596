import { plainToInstance, Transform } from 'class-transformer';
import {
  IsBoolean,
  IsEmail,
  IsIn,
  IsInt,
  IsOptional,
  IsString,
  IsUrl,
  Matches,
  Max,
  MaxLength,
  Min,
  MinLength,
  validateSync,
  ValidationError,
} from 'class-validator';
import * as path from 'node:path';
import { normalizeIpRule } from '../access-tokens/ip-rules';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const toInt = ({ value }: { value: unknown }) =>
  typeof value === 'string' && /^-?\d+$/.test(value.trim()) ? Number(value) : value;
const toBool = ({ value }: { value: unknown }) => {
  if (typeof value !== 'string') return value;
  const v = value.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  return value;
};
const emptyToUndefined = ({ value }: { value: unknown }) =>
  typeof value === 'string' && value.trim() === '' ? undefined : value;

/**
 * The environment as Keyward reads it. Each property is the variable's own name so that a
 * validation error names exactly what the operator has to fix; `loadConfig` maps it to the
 * typed `KeywardConfig` the rest of the code uses. Every variable here is documented in the
 * README's configuration table.
 */
export class Environment {
  @IsOptional()
  @Transform(emptyToUndefined)
  @IsString()
  HOST?: string;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number from 0 to 65535' })
  @Min(0, { message: 'must be a whole number from 0 to 65535' })
  @Max(65535, { message: 'must be a whole number from 0 to 65535' })
  PORT?: number;

  @IsOptional()
  @Transform(emptyToUndefined)
  @IsUrl(
    { require_tld: false, protocols: ['http', 'https'], require_protocol: true },
    { message: 'must be an http(s) URL such as https://keyward.example.com' },
  )
  PUBLIC_URL?: string;

  @IsOptional()
  @Transform(emptyToUndefined)
  @Matches(/^postgres(ql)?:\/\/.+/, {
    message: 'must be a PostgreSQL URL such as postgres://user:password@host:5432/database',
  })
  DATABASE_URL?: string;

  @IsOptional()
  @Transform(emptyToUndefined)
  @Matches(/^rediss?:\/\/.+/, { message: 'must be a Redis URL such as redis://127.0.0.1:6379' })
  REDIS_URL?: string;

  @IsOptional()
  @Transform(emptyToUndefined)
  @IsString()
  KEYWARD_DATA_DIR?: string;

  @IsOptional()
  @Transform(emptyToUndefined)
  @Matches(/^\s*\d+:[A-Za-z0-9+/_-]+=*\s*(,\s*\d+:[A-Za-z0-9+/_-]+=*\s*)*$/, {
    message: 'must be a comma-separated list of version:base64key pairs, e.g. "1:<44 base64 characters>"',
  })
  KEYWARD_MASTER_KEYS?: string;

  @IsOptional()
  @Transform(emptyToUndefined)
  @IsEmail({}, { message: 'must be an email address' })
  KEYWARD_ADMIN_EMAIL?: string;

  @IsOptional()
  @Transform(emptyToUndefined)
  @MinLength(12, { message: 'must be at least 12 characters long' })
  @MaxLength(256, { message: 'must be at most 256 characters long' })
  KEYWARD_ADMIN_PASSWORD?: string;

  @IsOptional()
  @Transform(emptyToUndefined)
  @MinLength(32, { message: 'must be at least 32 characters long' })
  KEYWARD_JWT_SECRET?: string;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of seconds from 60 to 86400' })
  @Min(60, { message: 'must be a whole number of seconds from 60 to 86400' })
  @Max(86400, { message: 'must be a whole number of seconds from 60 to 86400' })
  KEYWARD_JWT_TTL_SECONDS?: number;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of minutes from 1 to 1440' })
  @Min(1, { message: 'must be a whole number of minutes from 1 to 1440' })
  @Max(1440, { message: 'must be a whole number of minutes from 1 to 1440' })
  KEYWARD_SESSION_IDLE_MINUTES?: number;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of hours from 1 to 720' })
  @Min(1, { message: 'must be a whole number of hours from 1 to 720' })
  @Max(720, { message: 'must be a whole number of hours from 1 to 720' })
  KEYWARD_SESSION_ABSOLUTE_HOURS?: number;

  @IsOptional()
  @Transform(toBool)
  @IsBoolean({ message: 'must be true or false' })
  KEYWARD_COOKIE_SECURE?: boolean;

  @IsOptional()
  @Transform(emptyToUndefined)
  @IsString()
  KEYWARD_TRUST_PROXY?: string;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of requests from 1 to 10000' })
  @Min(1, { message: 'must be a whole number of requests from 1 to 10000' })
  @Max(10000, { message: 'must be a whole number of requests from 1 to 10000' })
  KEYWARD_SIGNIN_RATE_LIMIT?: number;

  @IsOptional()
  @Transform(emptyToUndefined)
  @Matches(/^\d+(b|kb|mb)$/i, { message: 'must be a size such as 100kb or 1mb' })
  KEYWARD_BODY_LIMIT?: string;

  @IsOptional()
  @Transform(emptyToUndefined)
  @IsIn(LOG_LEVELS, { message: `must be one of ${LOG_LEVELS.join(', ')}` })
  LOG_LEVEL?: LogLevel;

  @IsOptional()
  @Transform(emptyToUndefined)
  @IsString()
  KEYWARD_PLUGINS?: string;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of seconds from 1 to 3600' })
  @Min(1, { message: 'must be a whole number of seconds from 1 to 3600' })
  @Max(3600, { message: 'must be a whole number of seconds from 1 to 3600' })
  KEYWARD_SCHEDULER_INTERVAL_SECONDS?: number;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of seconds from 0 to 2592000 (30 days)' })
  @Min(0, { message: 'must be a whole number of seconds from 0 to 2592000 (30 days)' })
  @Max(2592000, { message: 'must be a whole number of seconds from 0 to 2592000 (30 days)' })
  KEYWARD_ROTATION_GRACE_SECONDS?: number;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of days from 1 to 365' })
  @Min(1, { message: 'must be a whole number of days from 1 to 365' })
  @Max(365, { message: 'must be a whole number of days from 1 to 365' })
  KEYWARD_EXPIRY_WARNING_DAYS?: number;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number from 1 to 10' })
  @Min(1, { message: 'must be a whole number from 1 to 10' })
  @Max(10, { message: 'must be a whole number from 1 to 10' })
  KEYWARD_GATEWAY_MAX_ATTEMPTS?: number;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of milliseconds from 100 to 600000' })
  @Min(100, { message: 'must be a whole number of milliseconds from 100 to 600000' })
  @Max(600000, { message: 'must be a whole number of milliseconds from 100 to 600000' })
  KEYWARD_UPSTREAM_TIMEOUT_MS?: number;

  @IsOptional()
  @Transform(toBool)
  @IsBoolean({ message: 'must be true or false' })
  KEYWARD_FEATURE_FAILOVER?: boolean;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of milliseconds from 10 to 5000' })
  @Min(10, { message: 'must be a whole number of milliseconds from 10 to 5000' })
  @Max(5000, { message: 'must be a whole number of milliseconds from 10 to 5000' })
  KEYWARD_USAGE_FLUSH_MS?: number;

  // --- Admin security: lockout, audit checkpoints, failing gateway tokens ---

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of failed sign-ins from 3 to 1000' })
  @Min(3, { message: 'must be a whole number of failed sign-ins from 3 to 1000' })
  @Max(1000, { message: 'must be a whole number of failed sign-ins from 3 to 1000' })
  KEYWARD_LOCKOUT_THRESHOLD?: number;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of minutes from 1 to 1440' })
  @Min(1, { message: 'must be a whole number of minutes from 1 to 1440' })
  @Max(1440, { message: 'must be a whole number of minutes from 1 to 1440' })
  KEYWARD_LOCKOUT_MINUTES?: number;

  @IsOptional()
  @Transform(emptyToUndefined)
  @IsString()
  KEYWARD_AUDIT_CHECKPOINT_FILE?: string;

  @IsOptional()
  @Transform(emptyToUndefined)
  @IsUrl(
    { require_tld: false, protocols: ['http', 'https'], require_protocol: true },
    { message: 'must be an http(s) URL that accepts a POSTed JSON checkpoint' },
  )
  KEYWARD_AUDIT_CHECKPOINT_URL?: string;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of seconds from 10 to 86400' })
  @Min(10, { message: 'must be a whole number of seconds from 10 to 86400' })
  @Max(86400, { message: 'must be a whole number of seconds from 10 to 86400' })
  KEYWARD_AUDIT_CHECKPOINT_SECONDS?: number;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of failures from 1 to 100000' })
  @Min(1, { message: 'must be a whole number of failures from 1 to 100000' })
  @Max(100000, { message: 'must be a whole number of failures from 1 to 100000' })
  KEYWARD_FAILED_TOKEN_LIMIT?: number;
}

export interface KeywardConfig {
  host: string;
  port: number;
  /** Where people reach Keyward; used for printed links and to decide on Secure cookies. */
  publicUrl: string;
  databaseUrl?: string;
  redisUrl?: string;
  dataDir: string;
  masterKeys?: string;
  admin?: { email: string; password: string };
  jwt: { secret?: string; ttlSeconds: number };
  session: { idleMinutes: number; absoluteHours: number; cookieSecure: boolean };
  /** false, or the proxies whose X-Forwarded-For is believed (see parseTrustProxy). */
  trustProxy: false | string;
  signInRateLimitPerMinute: number;
  bodyLimit: string;
  logLevel: LogLevel;
  plugins: string[];
  /** How often scheduled work (rotations, retirements, counter resets) looks for what is due. */
  schedulerIntervalSeconds: number;
  /** How long an old secret stays valid at the provider after a scheduled rotation. */
  rotationGraceSeconds: number;
  /** Keys expiring within this many days show as "expiring soon". */
  expiryWarningDays: number;
  gateway: {
    /** Keys tried for one request before giving up (failover). */
    maxAttempts: number;
    /** How long to wait for the provider's response headers before trying the next key. */
    upstreamTimeoutMs: number;
    /** The spec's `failover` feature: off, a failing key's error goes straight to the client. */
    failover: boolean;
  };
  /** Usage events are written in batches this often (and sooner when many are waiting). */
  usageFlushMs: number;
  security: {
    /** Failed sign-ins to one account within `lockoutMinutes` that lock it for `lockoutMinutes`. */
    lockoutThreshold: number;
    lockoutMinutes: number;
    /** Where signed audit checkpoints go besides the database and the log. */
    checkpointFile?: string;
    checkpointUrl?: string;
    checkpointSeconds: number;
    /** Failing gateway tokens per client address per minute before that address is refused. */
    failedTokenLimit: number;
  };
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Keyward cannot start: the configuration is invalid.\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

function describe(error: ValidationError): string {
  const messages = Object.values(error.constraints ?? {});
  // The value is not echoed: some variables (passwords, keys) are secrets.
  return `${error.property} ${[...new Set(messages)].join('; ')}`;
}

const PROXY_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/**
 * Trusted proxies are named: addresses, CIDR ranges or proxy-addr's names. `true` (trust every
 * hop) and hop counts would let any client write its own X-Forwarded-For and pick the address
 * that the sign-in limit, the IP allowlists and the audit log see, so they are refused.
 */
export function parseTrustProxy(value: string | undefined): { value: false | string } | { problem: string } {
  if (value === undefined || value.trim() === 'false') return { value: false };
  const text = value.trim();
  if (text === 'true' || /^\d+$/.test(text)) {
    return {
      problem:
        `KEYWARD_TRUST_PROXY=${text} would trust X-Forwarded-For from any client, who could then choose the address ` +
        'that sign-in limits, IP allowlists and the audit log see. Name the proxies instead: their addresses or ' +
        'CIDR ranges, or loopback, e.g. KEYWARD_TRUST_PROXY=loopback,10.0.0.0/8',
    };
  }
  const entries = text.split(',').map((entry) => entry.trim());
  const bad = entries.filter((entry) => !PROXY_NAMES.has(entry) && normalizeIpRule(entry) === null);
  if (bad.length > 0 || entries.some((entry) => entry === '')) {
    return {
      problem:
        'KEYWARD_TRUST_PROXY must be false or a comma-separated list of proxy addresses, CIDR ranges, loopback, ' +
        `linklocal or uniquelocal (not understood: ${bad.map((b) => JSON.stringify(b.slice(0, 60))).join(', ') || 'an empty entry'})`,
    };
  }
  return { value: entries.join(',') };
}

/** Reads and validates the environment; throws `ConfigError` naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): KeywardConfig {
  const raw = plainToInstance(Environment, { ...env }, { excludeExtraneousValues: false });
  const errors = validateSync(raw, { whitelist: false, forbidUnknownValues: false });
  const problems = errors.map(describe);

  if (Boolean(raw.KEYWARD_ADMIN_EMAIL) !== Boolean(raw.KEYWARD_ADMIN_PASSWORD)) {
    problems.push(
      'KEYWARD_ADMIN_EMAIL and KEYWARD_ADMIN_PASSWORD must be set together (or neither, to use the one-time setup link)',
    );
  }
  const trustProxy = parseTrustProxy(raw.KEYWARD_TRUST_PROXY);
  if ('problem' in trustProxy) problems.push(trustProxy.problem);
  if (problems.length > 0 || 'problem' in trustProxy) throw new ConfigError(problems);

  const host = raw.HOST ?? '127.0.0.1';
  const port = raw.PORT ?? 3000;
  const publicUrl = (raw.PUBLIC_URL ?? `http://${host.includes(':') ? `[${host}]` : host}:${port}`).replace(/\/+$/, '');
  return {
    host,
    port,
    publicUrl,
    databaseUrl: raw.DATABASE_URL,
    redisUrl: raw.REDIS_URL,
    dataDir: path.resolve(raw.KEYWARD_DATA_DIR ?? '.keyward'),
    masterKeys: raw.KEYWARD_MASTER_KEYS,
    admin:
      raw.KEYWARD_ADMIN_EMAIL && raw.KEYWARD_ADMIN_PASSWORD
        ? { email: raw.KEYWARD_ADMIN_EMAIL.toLowerCase(), password: raw.KEYWARD_ADMIN_PASSWORD }
        : undefined,
    jwt: { secret: raw.KEYWARD_JWT_SECRET, ttlSeconds: raw.KEYWARD_JWT_TTL_SECONDS ?? 900 },
    session: {
      idleMinutes: raw.KEYWARD_SESSION_IDLE_MINUTES ?? 30,
      absoluteHours: raw.KEYWARD_SESSION_ABSOLUTE_HOURS ?? 12,
      cookieSecure: raw.KEYWARD_COOKIE_SECURE ?? publicUrl.startsWith('https://'),
    },
    trustProxy: trustProxy.value,
    signInRateLimitPerMinute: raw.KEYWARD_SIGNIN_RATE_LIMIT ?? 10,
    bodyLimit: raw.KEYWARD_BODY_LIMIT ?? '1mb',
    logLevel: raw.LOG_LEVEL ?? 'info',
    plugins: (raw.KEYWARD_PLUGINS ?? '')
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean),
    schedulerIntervalSeconds: raw.KEYWARD_SCHEDULER_INTERVAL_SECONDS ?? 30,
    rotationGraceSeconds: raw.KEYWARD_ROTATION_GRACE_SECONDS ?? 300,
    expiryWarningDays: raw.KEYWARD_EXPIRY_WARNING_DAYS ?? 7,
    gateway: {
      maxAttempts: raw.KEYWARD_GATEWAY_MAX_ATTEMPTS ?? 3,
      upstreamTimeoutMs: raw.KEYWARD_UPSTREAM_TIMEOUT_MS ?? 60_000,
      failover: raw.KEYWARD_FEATURE_FAILOVER ?? true,
    },
    usageFlushMs: raw.KEYWARD_USAGE_FLUSH_MS ?? 200,
    security: {
      lockoutThreshold: raw.KEYWARD_LOCKOUT_THRESHOLD ?? 10,
      lockoutMinutes: raw.KEYWARD_LOCKOUT_MINUTES ?? 15,
      checkpointFile: raw.KEYWARD_AUDIT_CHECKPOINT_FILE ? path.resolve(raw.KEYWARD_AUDIT_CHECKPOINT_FILE) : undefined,
      checkpointUrl: raw.KEYWARD_AUDIT_CHECKPOINT_URL,
      checkpointSeconds: raw.KEYWARD_AUDIT_CHECKPOINT_SECONDS ?? 300,
      failedTokenLimit: raw.KEYWARD_FAILED_TOKEN_LIMIT ?? 30,
    },
  };
}
