import type { NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule, type OpenAPIObject } from '@nestjs/swagger';
import type { Express, Request, Response } from 'express';
import * as path from 'node:path';
import { KEYWARD_VERSION } from '../bootstrap';
import { describeDtosFromValidators } from './validator-schemas';

/** What the description covers: the JSON API and health, not the console's HTML routes. */
const DOCUMENTED = /^\/(api|health)(\/|$)/;

/** A tag per resource, from the path: /api/admin/api-keys/{id} → api-keys. */
function tagFor(route: string): string {
  const parts = route.split('/').filter(Boolean);
  if (parts[0] === 'health') return 'health';
  if (parts[1] === 'admin') return parts[2] ?? 'admin';
  return parts[1] ?? 'api';
}

export function buildOpenApiDocument(app: NestExpressApplication): OpenAPIObject {
  const config = new DocumentBuilder()
    .setTitle('Keyward API')
    .setDescription(
      'The JSON API of Keyward: users, the audit log, provider keys, rotation, access tokens, usage and providers. ' +
        'Authenticate with `POST /api/auth/token` and send the access token as `Authorization: Bearer …`. ' +
        'Errors are RFC 9457 problem documents (`application/problem+json`). Gateway calls (`/proxy/{provider}/…`) ' +
        "use the provider's own API, with a Keyward access token in place of the provider key.",
    )
    .setVersion(KEYWARD_VERSION)
    .setLicense('Apache-2.0', 'https://www.apache.org/licenses/LICENSE-2.0')
    .addBearerAuth({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' })
    .build();
  const document = SwaggerModule.createDocument(app, config);
  describeDtosFromValidators(document);
  for (const route of Object.keys(document.paths)) {
    if (!DOCUMENTED.test(route)) {
      delete document.paths[route];
      continue;
    }
    for (const operation of Object.values(document.paths[route])) {
      if (typeof operation !== 'object' || operation === null || !('responses' in operation)) continue;
      const op = operation as { tags?: string[]; security?: unknown[] };
      if (!op.tags?.length) op.tags = [tagFor(route)];
      if (route.startsWith('/api/admin/') || route === '/api/auth/me') op.security = [{ bearer: [] }];
    }
  }
  return document;
}

const page = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Keyward API</title>
<link rel="stylesheet" href="/assets/vendor/swagger-ui/swagger-ui.css">
<link rel="icon" href="/assets/favicon.svg">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/assets/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/assets/openapi-docs.js"></script>
</body>
</html>
`;

/**
 * `/api/openapi.json` and a Swagger UI at `/api/docs`. The UI's files come from the installed
 * swagger-ui-dist package (no CDN) and its start-up script is a file of ours, so the page runs
 * under the same CSP as the console (scripts and styles from this origin only).
 */
export function serveOpenApi(app: NestExpressApplication): void {
  let document: OpenAPIObject | undefined;
  const express = app.getHttpAdapter().getInstance() as Express;
  express.get('/api/openapi.json', (_req: Request, res: Response) => {
    document ??= buildOpenApiDocument(app);
    res.setHeader('Cache-Control', 'no-cache');
    res.json(document);
  });
  express.get('/api/docs', (_req: Request, res: Response) => {
    res.type('html').send(page);
  });
  const ui = path.dirname(require.resolve('swagger-ui-dist/swagger-ui-bundle.js'));
  app.useStaticAssets(ui, { prefix: '/assets/vendor/swagger-ui/', maxAge: '1d', index: false });
}
