import { generateRecoveryCode, normaliseRecoveryCode } from './mfa.service';

describe('recovery codes', () => {
  it('are ten unambiguous characters in two groups', () => {
    const codes = Array.from({ length: 200 }, generateRecoveryCode);
    for (const code of codes) expect(code).toMatch(/^[a-hjkmnp-z2-9]{5}-[a-hjkmnp-z2-9]{5}$/);
    expect(new Set(codes).size).toBe(codes.length);
  });

  it('compare in one spelling: case, spaces and dashes do not matter', () => {
    expect(normaliseRecoveryCode(' ABCDE-23456 ')).toBe('abcde23456');
    expect(normaliseRecoveryCode('abcde 23456')).toBe('abcde23456');
  });
});
