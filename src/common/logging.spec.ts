import { redactSecrets, sanitizeUrl } from './logging';

describe('log redaction', () => {
  it('hides every field named like a secret, at any depth', () => {
    const sut = redactSecrets({
      authorization: 'Bearer abc',
      cookie: 'sid=1',
      password: 'hunter2hunter2',
      apiKey: 'sk-proj-123',
      nested: { clientSecret: 's', accessToken: 't', list: [{ providerKey: 'k' }] },
      email: 'a@example.test',
      keyId: 'uuid-stays',
    });
    const text = JSON.stringify(sut);
    for (const secret of ['Bearer abc', 'sid=1', 'hunter2hunter2', 'sk-proj-123', '"s"', '"t"', '"k"']) {
      expect(text).not.toContain(secret);
    }
    expect(sut).toMatchObject({ email: 'a@example.test', keyId: 'uuid-stays' });
  });

  it('hides secret-named query parameters in logged URLs', () => {
    expect(sanitizeUrl('/setup?token=abc123&step=2')).toBe('/setup?token=%5Bredacted%5D&step=2');
    expect(sanitizeUrl('/admin/users?page=2')).toBe('/admin/users?page=2');
  });
});
