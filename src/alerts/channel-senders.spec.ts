import { createHmac } from 'node:crypto';
import { signatureHeader } from './channel-senders';

describe('signatureHeader', () => {
  const sut = signatureHeader;
  const at = new Date('2026-12-03T10:00:00.750Z');

  it('signs "<unix seconds>.<body>" with HMAC-SHA256, hex', () => {
    const body = '{"type":"test"}';
    const expected = createHmac('sha256', 'secret-1234567890').update(`1796292000.${body}`).digest('hex');
    expect(sut('secret-1234567890', body, at)).toBe(`t=1796292000,v1=${expected}`);
  });

  it('changes with the body, the secret and the time', () => {
    const one = sut('secret-1234567890', 'a', at);
    expect(sut('secret-1234567890', 'b', at)).not.toBe(one);
    expect(sut('secret-0987654321', 'a', at)).not.toBe(one);
    expect(sut('secret-1234567890', 'a', new Date(at.getTime() + 1000))).not.toBe(one);
  });
});
