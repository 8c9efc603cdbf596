import { maskSecret } from './key-hint';

describe('maskSecret', () => {
  it.each([
    ['sk-proj-abcdefghijklmnopqrstuvwxyz0123456789', 'sk-proj-…6789'],
    ['sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789', 'sk-ant-api03-…6789'],
    ['gsk_abcdefghijklmnopqrstuvwxyz0123456789ABCD', 'gsk_…ABCD'],
    ['sk-or-v1-0123456789abcdef0123456789abcdef', 'sk-or-v1-…cdef'],
    ['AIzaSyAbcdefghijklmnopqrstuvwxyz', '…wxyz'],
    ['sk-abc_defghijklmnopqrstuvwxyz', 'sk-…wxyz'],
  ])('masks %s as %s', (secret, masked) => {
    expect(maskSecret(secret)).toBe(masked);
  });

  it('shows no characters of a short secret', () => {
    expect(maskSecret('sk-secret')).toBe('sk-…');
    expect(maskSecret('sk-proj-l6_x-abcdefghijklmnopqrstu')).toBe('sk-proj-…rstu');
    expect(maskSecret('abcdefgh')).toBe('…');
  });

  it('never reveals more than the prefix and four characters', () => {
    const secret = 'sk-' + 'x'.repeat(40) + 'wxyz';
    const sut = maskSecret(secret);
    expect(sut.replace('…', '').length).toBeLessThanOrEqual(3 + 4);
  });
});
