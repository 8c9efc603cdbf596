import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { type Dispatcher, Pool } from 'undici';

/**
 * The yardstick of `npm run bench -- gateway`: the least a Node pass-through proxy has to do.
 * It forwards method, path, headers and body to BENCH_UPSTREAM (an origin) over a keep-alive
 * undici Pool (the same settings as Keyward's), puts BENCH_UPSTREAM_KEY in the Authorization
 * header instead of the client's, and pipes status, headers and body back. No access-token
 * check, no key selection, no usage accounting, no framework. Prints `{"url": …}` on stdout and
 * stops when its stdin closes.
 *
 * BENCH_PROXY=pipe makes it the other common yardstick: node:http's own client with a keep-alive
 * Agent and `.pipe()` both ways, the pass-through proxy most Node gateways are compared with.
 */

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'host',
]);

function forwardable(headers: IncomingHttpHeaders | Dispatcher.ResponseData['headers']): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

async function main(): Promise<void> {
  const upstream = process.env.BENCH_UPSTREAM;
  const key = process.env.BENCH_UPSTREAM_KEY;
  if (!upstream || !key) throw new Error('BENCH_UPSTREAM and BENCH_UPSTREAM_KEY are required');
  // Idle sockets (of both proxies) are closed after 4 s, before the fake's server closes them
  // (Node's default keepAliveTimeout, 5 s): else a request can go out on a socket the server is
  // closing, and fail with ECONNRESET (a 502 here), when the targets take turns with idle gaps.
  const pool = new Pool(upstream, { connections: 256, pipelining: 1, keepAliveTimeout: 4_000 });
  const agent = new Agent({ keepAlive: true, maxSockets: 256, timeout: 4_000 });
  const origin = new URL(upstream);

  const pipeProxy = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
    const headers = forwardable(req.headers);
    headers.authorization = `Bearer ${key}`;
    const out = httpRequest(
      { host: origin.hostname, port: origin.port, method: req.method, path: req.url, headers, agent },
      (upstreamRes) => {
        res.writeHead(upstreamRes.statusCode ?? 502, forwardable(upstreamRes.headers));
        upstreamRes.pipe(res);
      },
    );
    out.on('error', () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    req.pipe(out);
  };

  // BENCH_PROXY=dispatch: undici's dispatch handler, the interface Keyward's gateway uses.
  const dispatchProxy = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
    const headers = forwardable(req.headers) as Record<string, string | string[]>;
    headers.authorization = `Bearer ${key}`;
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
    pool.dispatch(
      { method: req.method as Dispatcher.HttpMethod, path: req.url ?? '/', headers, body: hasBody ? req : undefined },
      {
        // Its presence marks the handler as the new-style interface (undici wraps others).
        onRequestStart() {},
        onResponseStart(_c, status, responseHeaders) {
          res.writeHead(status, forwardable(responseHeaders));
        },
        onResponseData(c, chunk) {
          if (!res.write(chunk)) {
            c.pause();
            res.once('drain', () => c.resume());
          }
        },
        onResponseEnd() {
          res.end();
        },
        onResponseError() {
          if (!res.headersSent) res.writeHead(502).end();
          else res.destroy();
        },
      },
    );
  };

  const server = createServer({ noDelay: true, keepAliveTimeout: 30_000 }, (req, res) => {
    if (process.env.BENCH_PROXY === 'pipe') return pipeProxy(req, res);
    if (process.env.BENCH_PROXY === 'dispatch') return dispatchProxy(req, res);
    const headers = forwardable(req.headers) as Record<string, string | string[]>;
    headers.authorization = `Bearer ${key}`;
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
    pool
      .request({
        method: req.method as Dispatcher.HttpMethod,
        path: req.url ?? '/',
        headers,
        body: hasBody ? req : undefined,
      })
      .then(async (upstreamRes) => {
        res.writeHead(upstreamRes.statusCode, forwardable(upstreamRes.headers));
        await pipeline(upstreamRes.body, res);
      })
      .catch(() => {
        if (!res.headersSent) res.writeHead(502).end();
        else res.destroy();
      });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const stop = () => {
    server.closeAllConnections();
    server.close();
    agent.destroy();
    void pool.destroy().finally(() => process.exit(0));
  };
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${port}`, pid: process.pid })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`bare-proxy: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
