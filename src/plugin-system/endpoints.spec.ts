import { OPENAI_ROUTES } from '../../plugins/openai/routes';
import { checkPath, EndpointTable, routesFromPaths, upstreamPath } from './endpoints';

describe('checkPath', () => {
  it.each([
    ['/v1/models/%2E%2E/files', 'encoded "."'],
    ['/v1/models/%2e%2e/files', 'encoded "."'],
    ['/v1/models/%252E%252E/files', 'double encoding'],
    ['/v1/chat/completions/../../../../v1/organization/users', 'dot segments'],
    ['/v1/chat/./completions', 'dot segments'],
    ['/v1/files%2Fabc', 'encoded "/"'],
    ['/v1/files%2fabc', 'encoded "/"'],
    ['/v1\\organization', 'backslashes'],
    ['/v1/%5Corganization', 'encoded "\\"'],
    ['/v1//chat/completions', 'empty path segments'],
    ['/v1/chat/completions/', 'empty path segments'],
    ['/v1/models/%00', 'encoded NUL'],
    ['/v1/models/%E0%A4%A', 'not valid percent-encoding'],
    ['/v1/models/a b', 'not allowed'],
    ['v1/models', 'must start with'],
  ])('refuses %s', (path, reason) => {
    const sut = checkPath(path);
    expect(sut.ok).toBe(false);
    expect(sut.ok ? '' : sut.reason).toContain(reason);
  });

  it('decodes ordinary segments once', () => {
    expect(checkPath('/v1/models/ft%3Agpt-4o%3Aacme%3Ax')).toEqual({
      ok: true,
      segments: ['v1', 'models', 'ft:gpt-4o:acme:x'],
    });
  });

  it('builds the upstream path from encoded segments', () => {
    expect(upstreamPath(['v1', 'models', 'ft:gpt-4o:acme:x'])).toBe('/v1/models/ft%3Agpt-4o%3Aacme%3Ax');
  });
});

describe('EndpointTable', () => {
  const sut = new EndpointTable(OPENAI_ROUTES);

  it('matches literal and parameter segments', () => {
    expect(sut.match('POST', ['chat', 'completions'])).toMatchObject({ kind: 'match', endpoint: { group: 'chat' } });
    expect(sut.match('GET', ['files', 'file-abc', 'content'])).toMatchObject({
      kind: 'match',
      endpoint: { group: 'files' },
    });
  });

  it('answers method-not-allowed with the allowed methods', () => {
    expect(sut.match('PUT', ['chat', 'completions'])).toEqual({
      kind: 'method-not-allowed',
      allowed: ['POST', 'GET'],
    });
  });

  it('never matches organisation, project or admin paths', () => {
    expect(sut.match('GET', ['organization', 'users'])).toEqual({ kind: 'none' });
    expect(sut.match('POST', ['organization', 'projects', 'p1', 'service_accounts'])).toEqual({ kind: 'none' });
    expect(sut.match('GET', ['organization', 'admin_api_keys'])).toEqual({ kind: 'none' });
  });

  it('derives routes for a plugin that lists only paths', () => {
    const legacy = new EndpointTable(routesFromPaths(['/chat/completions', '/models']));
    expect(legacy.match('GET', ['models'])).toMatchObject({ kind: 'match', endpoint: { group: 'models' } });
    expect(legacy.match('POST', ['chat', 'completions'])).toMatchObject({ kind: 'match' });
  });
});
