import { plainToInstance, Transform } from 'class-transformer';
import {
  IsBoolean,
  IsEmail,
  IsIn,
  IsInt,
  IsNumber,
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
const toNumber = ({ value }: { value: unknown }) =>
  typeof value === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(value) ? Number(value) : value;
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
  @IsInt({ message: 'must be a whole number of milliseconds from 100 to 3600000' })
  @Min(100, { message: 'must be a whole number of milliseconds from 100 to 3600000' })
  @Max(3_600_000, { message: 'must be a whole number of milliseconds from 100 to 3600000' })
  KEYWARD_UPSTREAM_TIMEOUT_MS?: number;

  @IsOptional()
  @Transform(toBool)
  @IsBoolean({ message: 'must be true or false' })
  KEYWARD_FEATURE_FAILOVER?: boolean;

  @IsOptional()
  @Transform(emptyToUndefined)
  @Matches(/^\d+(b|kb|mb)$/i, { message: 'must be a size such as 32mb' })
  KEYWARD_GATEWAY_BODY_LIMIT?: string;

  @IsOptional()
  @Transform(emptyToUndefined)
  @Matches(/^\d+(b|kb|mb)$/i, { message: 'must be a size such as 512mb' })
  KEYWARD_GATEWAY_UPLOAD_LIMIT?: string;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of milliseconds from 100 to 3600000' })
  @Min(100, { message: 'must be a whole number of milliseconds from 100 to 3600000' })
  @Max(3_600_000, { message: 'must be a whole number of milliseconds from 100 to 3600000' })
  KEYWARD_UPSTREAM_IDLE_TIMEOUT_MS?: number;

  @IsOptional()
  @Transform(toBool)
  @IsBoolean({ message: 'must be true or false' })
  KEYWARD_GATEWAY_RETRY_AFTER_SEND?: boolean;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of milliseconds from 10 to 5000' })
  @Min(10, { message: 'must be a whole number of milliseconds from 10 to 5000' })
  @Max(5000, { message: 'must be a whole number of milliseconds from 10 to 5000' })
  KEYWARD_USAGE_FLUSH_MS?: number;

  // ---- limits and budgets (src/limits) ----
  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of tokens from 1 to 10000000' })
  @Min(1, { message: 'must be a whole number of tokens from 1 to 10000000' })
  @Max(10_000_000, { message: 'must be a whole number of tokens from 1 to 10000000' })
  KEYWARD_DEFAULT_MAX_OUTPUT_TOKENS?: number;

  @IsOptional()
  @Transform(toNumber)
  @IsNumber({ allowNaN: false, allowInfinity: false }, { message: 'must be a number of USD from 0 to 100000' })
  @Min(0, { message: 'must be a number of USD from 0 to 100000' })
  @Max(100_000, { message: 'must be a number of USD from 0 to 100000' })
  KEYWARD_UNPRICED_USD_PER_MILLION_TOKENS?: number;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of milliseconds from 50 to 10000' })
  @Min(50, { message: 'must be a whole number of milliseconds from 50 to 10000' })
  @Max(10_000, { message: 'must be a whole number of milliseconds from 50 to 10000' })
  KEYWARD_LIMITS_STORE_TIMEOUT_MS?: number;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of tokens from 1 to 1000000000' })
  @Min(1, { message: 'must be a whole number of tokens from 1 to 1000000000' })
  @Max(1_000_000_000, { message: 'must be a whole number of tokens from 1 to 1000000000' })
  KEYWARD_USAGE_REPORT_MAX_TOKENS?: number;

  @IsOptional()
  @Transform(toNumber)
  @IsNumber({ allowNaN: false, allowInfinity: false }, { message: 'must be a number of USD from 0.01 to 1000000' })
  @Min(0.01, { message: 'must be a number of USD from 0.01 to 1000000' })
  @Max(1_000_000, { message: 'must be a number of USD from 0.01 to 1000000' })
  KEYWARD_USAGE_REPORT_MAX_COST_USD?: number;
  // ---- durability (shutdown, journal, outages, Redis) ----

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of milliseconds from 0 to 600000' })
  @Min(0, { message: 'must be a whole number of milliseconds from 0 to 600000' })
  @Max(600000, { message: 'must be a whole number of milliseconds from 0 to 600000' })
  KEYWARD_SHUTDOWN_GRACE_MS?: number;

  @IsOptional()
  @Transform(emptyToUndefined)
  @IsIn(['on', 'off'], { message: 'must be on or off' })
  KEYWARD_USAGE_JOURNAL?: 'on' | 'off';

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of milliseconds from 0 to 86400000 (24 h)' })
  @Min(0, { message: 'must be a whole number of milliseconds from 0 to 86400000 (24 h)' })
  @Max(86400000, { message: 'must be a whole number of milliseconds from 0 to 86400000 (24 h)' })
  KEYWARD_OUTAGE_SERVE_WINDOW_MS?: number;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of records from 1000 to 10000000' })
  @Min(1000, { message: 'must be a whole number of records from 1000 to 10000000' })
  @Max(10000000, { message: 'must be a whole number of records from 1000 to 10000000' })
  KEYWARD_USAGE_BUFFER_MAX?: number;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of milliseconds from 5 to 5000' })
  @Min(5, { message: 'must be a whole number of milliseconds from 5 to 5000' })
  @Max(5000, { message: 'must be a whole number of milliseconds from 5 to 5000' })
  KEYWARD_REDIS_TIMEOUT_MS?: number;
  // ---- alerts ----
  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of seconds from 1 to 3600' })
  @Min(1, { message: 'must be a whole number of seconds from 1 to 3600' })
  @Max(3600, { message: 'must be a whole number of seconds from 1 to 3600' })
  KEYWARD_ALERT_SWEEP_SECONDS?: number;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of milliseconds from 100 to 60000' })
  @Min(100, { message: 'must be a whole number of milliseconds from 100 to 60000' })
  @Max(60000, { message: 'must be a whole number of milliseconds from 100 to 60000' })
  KEYWARD_ALERT_DELIVERY_POLL_MS?: number;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of milliseconds from 10 to 3600000' })
  @Min(10, { message: 'must be a whole number of milliseconds from 10 to 3600000' })
  @Max(3600000, { message: 'must be a whole number of milliseconds from 10 to 3600000' })
  KEYWARD_ALERT_RETRY_BASE_MS?: number;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number from 1 to 20' })
  @Min(1, { message: 'must be a whole number from 1 to 20' })
  @Max(20, { message: 'must be a whole number from 1 to 20' })
  KEYWARD_ALERT_MAX_ATTEMPTS?: number;
  // ---- reports ----
  @IsOptional()
  @Transform(toBool)
  @IsBoolean({ message: 'must be true or false' })
  KEYWARD_REPORTS?: boolean;

  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of minutes from 0 to 720' })
  @Min(0, { message: 'must be a whole number of minutes from 0 to 720' })
  @Max(720, { message: 'must be a whole number of minutes from 0 to 720' })
  KEYWARD_REPORT_DELAY_MINUTES?: number;
  // Operations: metrics.
  @IsOptional()
  @Transform(emptyToUndefined)
  @MinLength(16, { message: 'must be at least 16 characters long' })
  KEYWARD_METRICS_TOKEN?: string;
  // --- Account security: MFA step-up and single sign-on (OpenID Connect) ---
  @IsOptional()
  @Transform(toInt)
  @IsInt({ message: 'must be a whole number of minutes from 1 to 720' })
  @Min(1, { message: 'must be a whole number of minutes from 1 to 720' })
  @Max(720, { message: 'must be a whole number of minutes from 1 to 720' })
  KEYWARD_MFA_STEP_UP_MINUTES?: number;

  @IsOptional()
  @Transform(emptyToUndefined)
  @IsUrl(
    { require_tld: false, protocols: ['http', 'https'], require_protocol: true },
    { message: 'must be the issuer URL of an OpenID provider, such as https://login.example.com/realms/acme' },
  )
  KEYWARD_OIDC_ISSUER?: string;

  @IsOptional()
  @Transform(emptyToUndefined)
  @IsString()
  @MaxLength(500, { message: 'must be at most 500 characters long' })
  KEYWARD_OIDC_CLIENT_ID?: string;

  @IsOptional()
  @Transform(emptyToUndefined)
  @IsString()
  @MaxLength(2000, { message: 'must be at most 2000 characters long' })
  KEYWARD_OIDC_CLIENT_SECRET?: string;

  @IsOptional()
  @Transform(emptyToUndefined)
  @Matches(/^[A-Za-z0-9_:./-]{1,200}$/, { message: 'must be a claim name such as groups or roles' })
  KEYWARD_OIDC_ROLE_CLAIM?: string;

  @IsOptional()
  @Transform(emptyToUndefined)
  @Matches(
    /^\s*[^=,\s][^=,]*=\s*(owner|admin|operator|auditor)\s*(,\s*[^=,\s][^=,]*=\s*(owner|admin|operator|auditor)\s*)*$/,
    {
      message:
        'must be a comma-separated list of claim-value=role pairs, roles among owner, admin, operator, auditor (e.g. keyward-admins=admin,keyward-ops=operator)',
    },
  )
  KEYWARD_OIDC_ROLE_MAP?: string;

  @IsOptional()
  @Transform(emptyToUndefined)
  @Matches(/^\s*[a-z0-9.-]+\.[a-z0-9-]+\s*(,\s*[a-z0-9.-]+\.[a-z0-9-]+\s*)*$/i, {
    message: 'must be a comma-separated list of email domains such as example.com,corp.example.com',
  })
  KEYWARD_OIDC_ALLOWED_DOMAINS?: string;

  @IsOptional()
  @Transform(emptyToUndefined)
  @IsIn(['owner', 'admin', 'operator', 'auditor', 'none'], {
    message: 'must be one of owner, admin, operator, auditor, or none (refuse users whose claim maps to no role)',
  })
  KEYWARD_OIDC_DEFAULT_ROLE?: string;

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
    /** How long to wait for the provider's first byte (its response headers). */
    upstreamTimeoutMs: number;
    /** How long a response may go quiet between two chunks. */
    idleTimeoutMs: number;
    /** Request bodies up to this size are buffered (JSON always); larger uploads stream through. */
    bodyLimitBytes: number;
    /** Uploads (multipart, binary) stream through up to this size. */
    uploadLimitBytes: number;
    /**
     * Try another key after a timeout or a dropped connection once the request was sent, when
     * the provider may already be doing (and billing) the work. Off by default.
     */
    retryAfterSend: boolean;
    /** The spec's `failover` feature: off, a failing key's error goes straight to the client. */
    failover: boolean;
  };
  /** Usage events are written in batches this often (and sooner when many are waiting). */
  usageFlushMs: number;
  /** Limits and budgets: the worst case reserved per request, and the bounds of reported usage. */
  limits: {
    defaultMaxOutputTokens: number;
    /** Price assumed for a model without one; unset: such models are refused under a USD limit. */
    unpricedUsdPerMillionTokens?: number;
    /** Longest wait for the counters' store before counting in memory on this instance. */
    storeTimeoutMs: number;
    usageReportMaxTokens: number;
    usageReportMaxCostUsd: number;
  };
  durability: {
    /** How long SIGTERM waits for calls in flight before it closes the upstream connections. */
    shutdownGraceMs: number;
    /** The local append-only usage journal: a SIGKILL then loses no recorded usage. */
    usageJournal: boolean;
    /** How long the gateway serves from its caches while PostgreSQL is unreachable. */
    outageServeWindowMs: number;
    /** Usage records held in memory while PostgreSQL is down; beyond it they go to the journal only. */
    usageBufferMax: number;
    /** A Redis command slower than this counts as a failure of the rate-limit circuit. */
    redisTimeoutMs: number;
  };
  alerts: {
    /** How often every rule is checked (time-based kinds; usage kinds also after each batch). */
    sweepSeconds: number;
    /** How often each instance looks for deliveries that are due. */
    deliveryPollMs: number;
    /** Pause before the second attempt; each further one waits four times longer. */
    retryBaseMs: number;
    maxAttempts: number;
  };
  /** Scheduled daily and monthly usage reports; `delayMinutes` after the period ends. */
  reports: { enabled: boolean; delayMinutes: number };
  /** Bearer token for GET /metrics; unset, /metrics answers only loopback clients. */
  metricsToken?: string;
  /** A second factor verified this recently lets sensitive operations through (step-up). */
  mfa: { stepUpMinutes: number };
  /** Single sign-on through OpenID Connect; undefined when not configured. */
  oidc?: OidcConfig;
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

export interface OidcConfig {
  issuer: string;
  clientId: string;
  clientSecret?: string;
  roleClaim: string;
  /** Claim value → role, in the order given (the first that matches wins). */
  roleMap: [string, Role][];
  /** Lower-cased email domains allowed to sign in; empty means any. */
  allowedDomains: string[];
  /** The role of a user whose claim maps to nothing; null refuses them. */
  defaultRole: Role | null;
}

type Role = 'owner' | 'admin' | 'operator' | 'auditor';

function parseOidc(raw: Environment, problems: string[]): OidcConfig | undefined {
  if (!raw.KEYWARD_OIDC_ISSUER && !raw.KEYWARD_OIDC_CLIENT_ID) return undefined;
  if (!raw.KEYWARD_OIDC_ISSUER || !raw.KEYWARD_OIDC_CLIENT_ID) {
    problems.push('KEYWARD_OIDC_ISSUER and KEYWARD_OIDC_CLIENT_ID must be set together to enable single sign-on');
    return undefined;
  }
  const roleMap = (raw.KEYWARD_OIDC_ROLE_MAP ?? '')
    .split(',')
    .map((pair) => pair.split('=').map((p) => p.trim()))
    .filter(([value, role]) => value && role)
    .map(([value, role]) => [value, role as Role] as [string, Role]);
  return {
    issuer: raw.KEYWARD_OIDC_ISSUER,
    clientId: raw.KEYWARD_OIDC_CLIENT_ID,
    clientSecret: raw.KEYWARD_OIDC_CLIENT_SECRET,
    roleClaim: raw.KEYWARD_OIDC_ROLE_CLAIM ?? 'groups',
    roleMap,
    allowedDomains: (raw.KEYWARD_OIDC_ALLOWED_DOMAINS ?? '')
      .split(',')
      .map((d) => d.trim().toLowerCase())
      .filter(Boolean),
    // Least privilege by default: a new SSO user can read, not change.
    defaultRole:
      raw.KEYWARD_OIDC_DEFAULT_ROLE === 'none' ? null : ((raw.KEYWARD_OIDC_DEFAULT_ROLE as Role) ?? 'auditor'),
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

/** `32mb` → bytes (the formats the size variables are validated against). */
export function sizeInBytes(size: string): number {
  const m = /^(\d+)(b|kb|mb)$/i.exec(size);
  if (!m) return 1024 * 1024;
  const unit = m[2].toLowerCase();
  return Number(m[1]) * (unit === 'mb' ? 1024 * 1024 : unit === 'kb' ? 1024 : 1);
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
  const oidc = parseOidc(raw, problems);
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
      // The official SDKs wait 10 minutes for an answer; a gateway that gives up sooner breaks
      // long reasoning calls.
      upstreamTimeoutMs: raw.KEYWARD_UPSTREAM_TIMEOUT_MS ?? 600_000,
      idleTimeoutMs: raw.KEYWARD_UPSTREAM_IDLE_TIMEOUT_MS ?? 600_000,
      bodyLimitBytes: sizeInBytes(raw.KEYWARD_GATEWAY_BODY_LIMIT ?? '32mb'),
      uploadLimitBytes: sizeInBytes(raw.KEYWARD_GATEWAY_UPLOAD_LIMIT ?? '512mb'),
      retryAfterSend: raw.KEYWARD_GATEWAY_RETRY_AFTER_SEND ?? false,
      failover: raw.KEYWARD_FEATURE_FAILOVER ?? true,
    },
    usageFlushMs: raw.KEYWARD_USAGE_FLUSH_MS ?? 200,
    limits: {
      defaultMaxOutputTokens: raw.KEYWARD_DEFAULT_MAX_OUTPUT_TOKENS ?? 4096,
      unpricedUsdPerMillionTokens: raw.KEYWARD_UNPRICED_USD_PER_MILLION_TOKENS,
      storeTimeoutMs: raw.KEYWARD_LIMITS_STORE_TIMEOUT_MS ?? 2000,
      usageReportMaxTokens: raw.KEYWARD_USAGE_REPORT_MAX_TOKENS ?? 10_000_000,
      usageReportMaxCostUsd: raw.KEYWARD_USAGE_REPORT_MAX_COST_USD ?? 1000,
    },
    durability: {
      shutdownGraceMs: raw.KEYWARD_SHUTDOWN_GRACE_MS ?? 25_000,
      // On by default for the embedded database, whose one machine is the whole deployment.
      usageJournal: (raw.KEYWARD_USAGE_JOURNAL ?? (raw.DATABASE_URL ? 'off' : 'on')) === 'on',
      outageServeWindowMs: raw.KEYWARD_OUTAGE_SERVE_WINDOW_MS ?? 15 * 60_000,
      usageBufferMax: raw.KEYWARD_USAGE_BUFFER_MAX ?? 100_000,
      redisTimeoutMs: raw.KEYWARD_REDIS_TIMEOUT_MS ?? 100,
    },
    alerts: {
      sweepSeconds: raw.KEYWARD_ALERT_SWEEP_SECONDS ?? 60,
      deliveryPollMs: raw.KEYWARD_ALERT_DELIVERY_POLL_MS ?? 1000,
      retryBaseMs: raw.KEYWARD_ALERT_RETRY_BASE_MS ?? 5000,
      maxAttempts: raw.KEYWARD_ALERT_MAX_ATTEMPTS ?? 6,
    },
    reports: { enabled: raw.KEYWARD_REPORTS ?? true, delayMinutes: raw.KEYWARD_REPORT_DELAY_MINUTES ?? 10 },
    metricsToken: raw.KEYWARD_METRICS_TOKEN,
    mfa: { stepUpMinutes: raw.KEYWARD_MFA_STEP_UP_MINUTES ?? 10 },
    oidc,
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
