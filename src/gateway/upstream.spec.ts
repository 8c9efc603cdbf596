import type { IncomingMessage } from 'node:http';
import type { ProviderPlugin } from '../plugin-system/provider-plugin';
import type { Call } from './gateway-call';
import { outgoingRequest } from './upstream';

/** Just what outgoingRequest reads of a call. */
function callTo(upstreamPath: string): Call {
  return {
    method: 'POST',
    origin: 'https://api.example',
    target: { upstreamPath, origin: 'https://api.example', endpoint: { method: 'POST', path: '/v1/x', group: 'chat' } },
    req: { headers: { 'content-type': 'application/json', cookie: 'a=b' } } as unknown as IncomingMessage,
    plugin: { config: { forwardHeaders: [] } } as unknown as ProviderPlugin,
    body: Buffer.from('{}'),
  } as unknown as Call;
}

describe('outgoingRequest', () => {
  it('sends the checked path and query as they are when the plugin only sets headers', () => {
    const outgoing = outgoingRequest(callTo("/v1/x?name=o'brien"));
    outgoing.headers.authorization = 'Bearer k';
    expect(outgoing.path).toBe("/v1/x?name=o'brien");
    expect(outgoing.headers).toMatchObject({ 'content-type': 'application/json', 'content-length': '2' });
    expect(outgoing.headers.cookie).toBeUndefined();
  });

  it('gives a plugin that reads the URL the full one, and sends what it changed', () => {
    const outgoing = outgoingRequest(callTo('/v1/x?a=1'));
    expect(outgoing.url.href).toBe('https://api.example/v1/x?a=1');
    // A provider that takes its key in the query.
    outgoing.url.searchParams.set('key', 'secret');
    expect(outgoing.path).toBe('/v1/x?a=1&key=secret');
    outgoing.url = new URL('https://api.example/v2/y');
    expect(outgoing.path).toBe('/v2/y');
  });
});
