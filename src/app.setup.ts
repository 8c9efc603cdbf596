import { Logger as NestLogger } from '@nestjs/common';
import type { NestExpressApplication } from '@nestjs/platform-express';
import connectPgSimple from 'connect-pg-simple';
import { csrfSync } from 'csrf-sync';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import session from 'express-session';
import helmet from 'helmet';
import { Logger } from 'nestjs-pino';
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';
import * as path from 'node:path';
import proxyAddr from 'proxy-addr';
import type { Pool } from 'pg';
import { DataSource } from 'typeorm';
import { GatewayService } from './gateway/gateway.service';
import { ShutdownService } from './lifecycle/shutdown.service';
import type { PostgresDriver } from 'typeorm/driver/postgres/PostgresDriver';
import { AuditService } from './audit/audit.service';
import { UsersService } from './auth/users/users.service';
import { clientIp, isMachineRequest, readCookie, userAgent } from './common/http';
import { refuseMiscasedApiPaths } from './common/input-guard';
import { joinAmbientTransaction } from './database/ambient-transaction';
import { helpers } from './common/handlebars';
import { projectRoot } from './common/paths';
import { SecretsService } from './crypto/secrets.service';
import { serveOpenApi } from './openapi/openapi';
import type { KeywardRuntime } from './runtime';

const isConsole = (req: Request) => !isMachineRequest(req) && !req.path.startsWith('/assets/');

function onlyForConsole(middleware: RequestHandler): RequestHandler {
  return (req, res, next) => (isConsole(req) ? middleware(req, res, next) : next());
}

/**
 * Express-level wiring shared by `main.ts` and the tests, so that the app under test is the
 * app that ships: security headers, assets, views, body limits, sessions and CSRF.
 */
export async function configureApp(app: NestExpressApplication, runtime: KeywardRuntime): Promise<void> {
  const { config } = runtime;
  const root = projectRoot();
  app.useLogger(app.get(Logger));
  app.set('trust proxy', config.trustProxy);
  app.disable('x-powered-by');
  // First in line, ahead of Express itself: gateway traffic skips everything the console and the
  // admin API need (router, helmet, sessions, body parsers, Nest's pipeline).
  const gateway = app.get(GatewayService);
  const trust = app.getHttpAdapter().getInstance().get('trust proxy fn') as Parameters<typeof proxyAddr>[1];
  gateway.clientAddress = (req) => proxyAddr(req as Request, trust);
  const server = app.getHttpServer() as HttpServer;
  const [express] = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[];
  server.removeAllListeners('request');
  const shutdown = app.get(ShutdownService);
  shutdown.attach(server);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    shutdown.onRequest(req, res);
    if (!gateway.handleRequest(req, res)) express(req, res);
  });

  app.use(refuseMiscasedApiPaths);
  app.use(
    helmet({
      contentSecurityPolicy: {
        useDefaults: false,
        directives: {
          defaultSrc: ["'self'"],
          scriptSrc: ["'self'"],
          styleSrc: ["'self'"],
          imgSrc: ["'self'", 'data:'],
          connectSrc: ["'self'"],
          fontSrc: ["'self'"],
          formAction: ["'self'"],
          frameAncestors: ["'none'"],
          objectSrc: ["'none'"],
          baseUri: ["'self'"],
        },
      },
      strictTransportSecurity: config.publicUrl.startsWith('https://'),
    }),
  );

  // Console pages show keys, tokens and spend: no browser or proxy may keep a copy, and Back after
  // sign-out must not show them again.
  app.use(['/admin', '/login', '/setup', '/logout'], (_req: Request, res: Response, next: NextFunction) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  });

  app.useStaticAssets(path.join(root, 'public'), { prefix: '/assets/', maxAge: '1h', index: false });
  // htmx is served from the installed package: no CDN, and its version is the lock file's.
  const htmx = path.dirname(require.resolve('htmx.org/dist/htmx.min.js'));
  app.useStaticAssets(htmx, { prefix: '/assets/vendor/htmx/', maxAge: '1d', index: false });
  serveOpenApi(app);

  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const hbs = (require('hbs') as { create(): HbsInstance }).create();
  for (const [name, fn] of Object.entries(helpers)) hbs.registerHelper(name, fn);
  await new Promise<void>((resolve) => hbs.registerPartials(path.join(root, 'views', 'partials'), () => resolve()));
  app.engine('hbs', hbs.__express);
  app.setBaseViewsDir(path.join(root, 'views'));
  app.setViewEngine('hbs');

  app.useBodyParser('json', { limit: config.bodyLimit, type: ['application/json', 'application/*+json'] });
  app.useBodyParser('urlencoded', { limit: '100kb', extended: false });

  const secrets = app.get(SecretsService);
  const pool = (app.get(DataSource).driver as PostgresDriver).master as Pool;
  const PgStore = connectPgSimple(session);
  const sessionStore = new PgStore({
    pool,
    tableName: 'sessions',
    createTableIfMissing: false,
    pruneSessionInterval: 900,
  });
  joinAmbientTransaction(sessionStore);
  const cookieName = config.session.cookieSecure ? '__Host-keyward' : 'keyward.sid';
  app.set('session cookie name', cookieName);
  app.use(
    onlyForConsole(
      session({
        name: cookieName,
        secret: secrets.derive('session').toString('base64'),
        store: sessionStore,
        resave: false,
        saveUninitialized: false,
        // The idle timeout: every request pushes the expiry out again.
        rolling: true,
        cookie: {
          httpOnly: true,
          sameSite: 'lax',
          secure: config.session.cookieSecure,
          path: '/',
          maxAge: config.session.idleMinutes * 60_000,
        },
      }),
    ),
  );

  const anonymousCsrf = anonymousCsrfState(
    config.session.cookieSecure ? '__Host-keyward-csrf' : 'keyward.csrf',
    config.session.cookieSecure,
    secrets.derive('csrf-cookie'),
  );
  const csrf = csrfSync({
    getTokenFromRequest: (req) => {
      const fromBody = (req.body as { _csrf?: unknown } | undefined)?._csrf;
      return typeof fromBody === 'string' ? fromBody : req.get('x-csrf-token');
    },
    // Signed-in: the token lives in the session. Anonymous (the sign-in and setup forms): in
    // a signed cookie, so that showing a form stores no session row.
    getTokenFromState: (req) => (req.session?.userId ? req.session.csrfToken : anonymousCsrf.read(req)),
    storeTokenInState: (req, token) => {
      if (req.session?.userId) req.session.csrfToken = token;
      else anonymousCsrf.store(req, token);
    },
  });
  const audit = app.get(AuditService);
  const users = app.get(UsersService);
  app.use(
    onlyForConsole((req: Request, res: Response, next: NextFunction) => {
      csrf.csrfSynchronisedProtection(req, res, (error?: unknown) => {
        if (!error) return next();
        void recordCsrfRejection(req, audit, users).finally(() => next(error));
      });
    }),
  );
}

/**
 * The CSRF token of a visitor who is not signed in, kept in an HttpOnly cookie with an HMAC
 * (signed double submit): a form must echo the token, a forged request from another site can
 * neither read the cookie nor mint a valid one.
 */
function anonymousCsrfState(name: string, secure: boolean, key: Buffer) {
  const sign = (token: string) => createHmac('sha256', key).update(token).digest('base64url');
  const cached = new WeakMap<Request, string>();
  return {
    read(req: Request): string | undefined {
      const mine = cached.get(req);
      if (mine) return mine;
      const raw = readCookie(req, name);
      const dot = raw?.lastIndexOf('.') ?? -1;
      if (!raw || dot <= 0) return undefined;
      const token = raw.slice(0, dot);
      const mac = Buffer.from(raw.slice(dot + 1));
      const expected = Buffer.from(sign(token));
      return mac.length === expected.length && timingSafeEqual(mac, expected) ? token : undefined;
    },
    store(req: Request, token: string | null | undefined): void {
      if (!token) {
        cached.delete(req);
        req.res?.clearCookie(name, { path: '/' });
        return;
      }
      cached.set(req, token);
      req.res?.cookie(name, `${token}.${sign(token)}`, { httpOnly: true, sameSite: 'lax', secure, path: '/' });
    },
  };
}

async function recordCsrfRejection(req: Request, audit: AuditService, users: UsersService): Promise<void> {
  const userId = req.session?.userId;
  const user = userId ? await users.findActive(userId).catch(() => null) : null;
  await audit.recordSafely(
    {
      actor: user ? { id: user.id, email: user.email, role: user.role } : null,
      ip: clientIp(req),
      userAgent: userAgent(req),
    },
    {
      action: 'csrf.rejected',
      outcome: 'denied',
      status: 403,
      reason:
        req.get('x-csrf-token') || (req.body as { _csrf?: unknown })?._csrf
          ? 'CSRF token invalid'
          : 'CSRF token missing',
      details: { method: req.method, path: req.path },
    },
  );
  new NestLogger('Csrf').warn(`Refused ${req.method} ${req.path}: missing or invalid CSRF token`);
}

interface HbsInstance {
  registerHelper(name: string, fn: (...args: never[]) => unknown): void;
  registerPartials(dir: string, done: () => void): void;
  __express: (path: string, options: object, cb: (e: unknown, s?: string) => void) => void;
}
